"""compose.yaml and deploy/: schema-valid, accepted by docker-compose, healthy ordering, no inline secrets,
Alertmanager wired to the stack's webhook receiver (which is run for real here), .dockerignore."""

from __future__ import annotations

import http.client
import json
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from dashboards import render as dashboards_render
from tests.ports import free_port
from tests.tools import require, require_tool

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.schema.json"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ALERTMANAGER_YML = REPO / "alerts" / "alertmanager.yml"
RECEIVER = REPO / "deploy" / "webhook_receiver.py"
PUBLISHED = {
    "agent": "8080",
    "prometheus": "9090",
    "alertmanager": "9093",
    "webhook-receiver": "9095",
    "grafana": "3000",
}
SECRET_WORDS = re.compile(r"TOKEN|PASSWORD|SECRET|PASSWD|API_KEY|CREDENTIAL", re.I)


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (short syntax `./src:/dst[:ro]`)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = (REPO / source).resolve()
    return mounts


def _secret_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> secret name of a service's secrets (default target /run/secrets/<name>)."""
    targets = {}
    for entry in service.get("secrets", []):
        name, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        target = target or name
        targets[target if target.startswith("/") else f"/run/secrets/{target}"] = name
    return targets


def test_compose_validates_against_compose_spec() -> None:
    require(SCHEMA.is_file(), f"compose JSON schema not found at {SCHEMA} (../shared/schemas)")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    errors = list(validator.iter_errors(_compose()))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    tool = require_tool("docker-compose")
    # A temp project with dummy secret files, so the check never depends on a developer's real secrets.
    project = tmp_path / "project"
    for part in ("deploy", "alerts", "dashboards"):
        shutil.copytree(REPO / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(COMPOSE, project / COMPOSE.name)
    (project / "secrets").mkdir()
    for secret in _compose()["secrets"].values():
        (project / secret["file"]).write_text("dummy", encoding="utf-8")
    result = _run(tool, "-f", "compose.yaml", "config", "-q", cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = _run(tool, "-f", "compose.yaml", "config", cwd=project)
    assert resolved.returncode == 0, resolved.stderr
    assert set(yaml.safe_load(resolved.stdout)["services"]) == {
        "mongodb",
        "bridge",
        "bridge-b",
        "agent",
        "prometheus",
        "alertmanager",
        "webhook-receiver",
        "grafana",
    }


def test_every_service_is_healthchecked_and_started_in_order() -> None:
    services = _services()
    for name, service in services.items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dependency}"
    assert set(services["agent"]["depends_on"]) == {"mongodb", "bridge", "bridge-b"}
    assert "agent" not in services["prometheus"].get("depends_on", {}), "Prometheus must watch a down agent"
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}
    assert set(services["alertmanager"]["depends_on"]) == {"webhook-receiver"}

    def reaches(start: str, seen: tuple[str, ...] = ()) -> None:
        assert start not in seen, f"depends_on cycle: {' -> '.join((*seen, start))}"
        for dependency in services[start].get("depends_on", {}):
            reaches(dependency, (*seen, start))

    for name in services:
        reaches(name)


def test_services_and_commands() -> None:
    services = _services()
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert services["mongodb"]["image"] == "mongo:7"
    assert "mongosh" in services["mongodb"]["healthcheck"]["test"]
    assert services["bridge"]["command"] == [
        "mt5-bridge",
        "--simulate",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert services["agent"]["command"] == ["mt5-agent", "run", "--config", "/etc/mt5-agent/agent.toml"]
    assert services["bridge-b"]["command"][:4] == [
        "mt5-bridge",
        "--simulate",
        "--accounts",
        "/etc/mt5-bridge/accounts.json",
    ]
    for name in ("bridge", "bridge-b", "agent"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["command"][0] in scripts, f"{name} runs a console script pyproject lacks"
    assert "/readyz" in " ".join(services["agent"]["healthcheck"]["test"])
    env = services["agent"]["environment"]
    assert env["MT5_AGENT_STORE_URL"] == "mongodb://mongodb:27017"
    assert "MT5_AGENT_BRIDGE_URL" not in env  # the sources are the config file's [[sources]] (two bridges)
    assert env["MT5_AGENT_LISTEN"] == "0.0.0.0:8080"
    sources = _agent_sources(services["agent"])
    assert [(s["name"], s["url"], s["token_file"]) for s in sources] == [
        ("vps-a", "http://bridge:8000", "/run/secrets/bridge_token"),
        ("vps-b", "http://bridge-b:8000", "/run/secrets/bridge_token"),
    ]
    assert _secret_targets(services["agent"])["/run/secrets/bridge_token"] == "bridge_token"
    assert env["MT5_AGENT_ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
    assert env["MT5_AGENT_METRICS_TOKEN_FILE"] == "/run/secrets/metrics_token"
    assert _secret_targets(services["agent"])["/run/secrets/metrics_token"] == "metrics_token"
    assert float(env["MT5_AGENT_PROBE_INTERVAL"]) <= 15, "MT5BridgeDown's 2m relies on a short probe period"
    for name in ("bridge", "bridge-b"):
        assert services[name]["environment"]["MT5_BRIDGE_TOKEN_FILE"] == "/run/secrets/bridge_token"


def _mounted(service: dict[str, Any], target: str) -> Path:
    """The repository file a service mounts at `target`."""
    [source] = [v.split(":")[0] for v in service.get("volumes", []) if v.split(":")[1] == target]
    return REPO / source


def _agent_sources(agent: dict[str, Any]) -> list[dict[str, Any]]:
    """The [[sources]] of the config file the agent runs with."""
    path = _mounted(agent, "/etc/mt5-agent/agent.toml")
    sources: list[dict[str, Any]] = tomllib.loads(path.read_text(encoding="utf-8"))["sources"]
    assert {s["name"] for s in sources} == {"vps-a", "vps-b"}
    return sources


def test_second_bridge_serves_its_own_accounts() -> None:
    """bridge-b's accounts file is valid and shares no login with the demo accounts of `bridge`."""
    from bridge.config import load_accounts_file
    from bridge.simulated import demo_accounts

    spec = _services()["bridge-b"]
    logins = {a.login for a in load_accounts_file(_mounted(spec, "/etc/mt5-bridge/accounts.json")).accounts}
    assert len(logins) == 2 and not logins & {a.login for a in demo_accounts()}


def test_only_expected_services_published_on_loopback() -> None:
    """Finding 10: Alertmanager (9093) and the webhook receiver (9095) are published, on 127.0.0.1 only."""
    published = {}
    for name, service in _services().items():
        for port in service.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            assert host_port == container_port
            published[name] = container_port
    assert published == PUBLISHED


def test_named_volumes_for_state() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    state = {"mongodb": "/data/db", "prometheus": "/prometheus", "alertmanager": "/alertmanager"}
    state["grafana"] = "/var/lib/grafana"
    for name, path in state.items():
        named = {v.split(":")[1]: v.split(":")[0] for v in _services()[name]["volumes"] if v[0] not in "./"}
        assert named.get(path) in declared, f"{name} keeps {path} outside a named volume"


def _secret_keyed_values(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every scalar whose mapping key looks secret (token, password, ...)."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if SECRET_WORDS.search(str(key)) and not isinstance(value, dict | list):
                found.append((here, value))
            found += _secret_keyed_values(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _secret_keyed_values(item, f"{path}[{i}]")
    return found


def _looks_random(literal: str) -> bool:
    mixed = all(re.search(p, literal) for p in (r"[a-z]", r"[A-Z]", r"\d"))
    return mixed or bool(re.fullmatch(r"[0-9a-fA-F]{32,}", literal))


def test_no_literal_secrets_in_compose() -> None:
    compose = _compose()
    for path, value in _secret_keyed_values(compose):
        assert isinstance(value, str) and value.startswith(("/", "./")), f"{path} holds a literal: {value!r}"
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        assert isinstance(env, dict), f"{name}: use the mapping form for environment"
        for key, value in env.items():
            if SECRET_WORDS.search(key):
                assert key.endswith("FILE"), f"{name}: {key} must be read from a file (*_FILE)"
                assert str(value) in _secret_targets(service), f"{name}: {key}={value} is no mounted secret"
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/"), secret
    literals = re.findall(r"[A-Za-z0-9+/=_-]{20,}", COMPOSE.read_text(encoding="utf-8"))
    assert not [lit for lit in literals if _looks_random(lit)]


def test_secret_detection_flags_literals() -> None:
    assert _secret_keyed_values({"services": {"x": {"environment": {"API_TOKEN": "abc123"}}}})
    assert _looks_random("Zk3Jq9XvB2mN8pL4tR6wY1sD")
    assert _looks_random("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    assert not _looks_random("GF_SECURITY_ADMIN_PASSWORD__FILE")
    assert not _looks_random("/etc/alertmanager/secrets/paging_webhook_token")


def test_secret_files_are_git_ignored_and_documented() -> None:
    git = require_tool("git")
    readme = (REPO / "secrets" / "README.md").read_text(encoding="utf-8")
    for secret in _compose()["secrets"].values():
        path = secret["file"].removeprefix("./")
        assert _run(git, "check-ignore", "-q", path).returncode == 0, f"{path} is not git-ignored"
        assert f"`{Path(path).name}`" in readme, f"secrets/README.md does not explain {path}"
    for tracked in ("secrets/README.md", "secrets/.gitignore"):
        assert _run(git, "check-ignore", "-q", tracked).returncode == 1, f"{tracked} must stay tracked"


def test_alertmanager_secret_files_are_mounted() -> None:
    service = _services()["alertmanager"]
    mounts = _bind_mounts(service)
    config_path = next(t for t in mounts if t.endswith("alertmanager.yml"))
    assert mounts[config_path] == REPO / "alerts" / "alertmanager.yml"
    assert f"--config.file={config_path}" in service["command"]
    config = yaml.safe_load(mounts[config_path].read_text(encoding="utf-8"))
    needed = {
        hook["http_config"]["authorization"]["credentials_file"]
        for receiver in config["receivers"]
        for hook in receiver.get("webhook_configs", [])
    }
    assert needed and needed <= set(_secret_targets(service)), needed - set(_secret_targets(service))


def test_grafana_mounts_provisioning_dashboards_and_password() -> None:
    service = _services()["grafana"]
    mounts = _bind_mounts(service)
    assert mounts["/etc/grafana/provisioning"] == REPO / "dashboards" / "provisioning"
    providers = yaml.safe_load(
        (REPO / "dashboards" / "provisioning" / "dashboards" / "mt5.yml").read_text(encoding="utf-8")
    )
    path = providers["providers"][0]["options"]["path"]
    for name in dashboards_render.FILES.values():
        assert mounts[f"{path}/{name}"] == REPO / "dashboards" / name, f"dashboard {name} is not mounted"
    password = service["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert password in _secret_targets(service)


def test_prometheus_config_passes_promtool_in_the_mounted_layout(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    service = _services()["prometheus"]
    for target, source in _bind_mounts(service).items():
        dest = tmp_path / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest)
    config_file = next(arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config.file="))
    # Secrets as the container sees them; the absolute paths in the config are rewritten into the layout.
    layout = tmp_path / config_file.lstrip("/")
    config = yaml.safe_load(layout.read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        auth = job.get("authorization")
        if auth:
            target = auth["credentials_file"]
            assert target in _secret_targets(service), f"{job['job_name']}: {target} is not a mounted secret"
            dummy = tmp_path / target.lstrip("/")
            dummy.parent.mkdir(parents=True, exist_ok=True)
            dummy.write_text("dummy", encoding="utf-8")
            auth["credentials_file"] = str(dummy)
    layout.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = _run(promtool, "check", "config", layout, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 1 rule files found" in output
    rules = yaml.safe_load((REPO / "alerts" / "rules.yml").read_text(encoding="utf-8"))
    n_rules = sum(len(g["rules"]) for g in rules["groups"])
    assert f"SUCCESS: {n_rules} rules found" in output


def test_prometheus_scrapes_the_agent_and_alerts_alertmanager() -> None:
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    agent = jobs["mt5-agent"]
    assert agent["scrape_interval"] == "15s"
    assert agent.get("metrics_path", "/metrics") == "/metrics"
    listen_port = _services()["agent"]["environment"]["MT5_AGENT_LISTEN"].rsplit(":", 1)[1]
    assert agent["static_configs"][0]["targets"] == [f"agent:{listen_port}"]
    [alertmanagers] = config["alerting"]["alertmanagers"]
    assert alertmanagers["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "alertmanager" in _services()


def test_prometheus_scrapes_the_agent_with_the_metrics_token() -> None:
    """The agent protects /metrics; Prometheus reads the same secret file the agent is given."""
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    agent_job = next(job for job in config["scrape_configs"] if job["job_name"] == "mt5-agent")
    auth = agent_job["authorization"]
    assert auth.get("type", "Bearer") == "Bearer" and "credentials" not in auth
    services = _services()
    prometheus_secret = _secret_targets(services["prometheus"])[auth["credentials_file"]]
    agent_secret = _secret_targets(services["agent"])[
        services["agent"]["environment"]["MT5_AGENT_METRICS_TOKEN_FILE"]
    ]
    assert prometheus_secret == agent_secret == "metrics_token"


def test_dockerfile_builds_a_non_root_python_image() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line.split(None, 1) for line in text.splitlines() if line and not line.startswith("#")]
    froms = [rest for op, *rest in instructions if op == "FROM"]
    assert froms == [["python:3.11-slim"]]
    assert re.search(r"pip install \.(\s|$)", text)
    users = [rest[0].strip() for op, *rest in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), (
            f"Dockerfile does not copy {package}/"
        )


@pytest.mark.parametrize("service", ["bridge", "bridge-b", "agent"])
def test_app_services_use_the_project_image(service: str) -> None:
    spec = _services()[service]
    assert spec["build"]["context"] == "."
    assert spec["image"] == _services()["agent"]["image"]


# --- Alertmanager -> webhook receiver (issue 10 finding 10) -------------------------------------


def _option_values(command: list[str], option: str) -> list[str]:
    """Values of `--option VALUE` / `--option=VALUE` in a command list."""
    values = []
    for i, arg in enumerate(command):
        if arg == option and i + 1 < len(command):
            values.append(command[i + 1])
        elif arg.startswith(option + "="):
            values.append(arg.split("=", 1)[1])
    return values


def _listen_port(service: dict[str, Any]) -> int:
    """The port a service's process listens on, from its command (`--port N`)."""
    [port] = _option_values(service["command"], "--port")
    return int(port)


def test_alertmanager_receivers_resolve_to_the_stacks_webhook_receiver() -> None:
    """Every webhook URL names a compose service and the port its process listens on (not 127.0.0.1
    inside Alertmanager's own container), a path that service accepts, and the same token file."""
    services = _services()
    alertmanager = services["alertmanager"]
    config_target = next(t for t in _bind_mounts(alertmanager) if t.endswith("alertmanager.yml"))
    config = yaml.safe_load(_bind_mounts(alertmanager)[config_target].read_text(encoding="utf-8"))
    hooks = [(r["name"], hook) for r in config["receivers"] for hook in r.get("webhook_configs", [])]
    assert {name for name, _ in hooks} == {"paging", "tickets"}
    for name, hook in hooks:
        url = urlsplit(hook["url"])
        assert url.scheme == "http" and url.hostname in services, (
            f"{name}: {hook['url']} is no compose service"
        )
        target = services[url.hostname]
        assert url.port == _listen_port(target), f"{name}: {url.hostname} does not listen on {url.port}"
        assert url.hostname in alertmanager.get("depends_on", {}), (
            "Alertmanager must start after its receiver"
        )
        accepted = dict(spec.partition("=")[::2] for spec in _option_values(target["command"], "--receiver"))
        path = url.path.strip("/")
        assert path in accepted, f"{name}: {url.hostname} accepts {sorted(accepted)}, not /{path}"
        # both sides read the same compose secret: Alertmanager sends the token the receiver checks
        sent = _secret_targets(alertmanager)[hook["http_config"]["authorization"]["credentials_file"]]
        checked = _secret_targets(target)[accepted[path]]
        assert sent == checked, f"{name}: Alertmanager sends {sent}, the receiver checks {checked}"
        assert _bind_mounts(target)[target["command"][1]] == RECEIVER
        health = " ".join(target["healthcheck"]["test"])
        assert f"127.0.0.1:{url.port}/healthz" in health


def test_alertmanager_comment_names_the_version_compose_runs() -> None:
    image = _services()["alertmanager"]["image"]
    version = image.rsplit(":v", 1)[1].rsplit(".", 1)[0]
    text = ALERTMANAGER_YML.read_text(encoding="utf-8")
    assert f"Alertmanager {version}" in text, (
        f"alertmanager.yml should name the version compose runs ({image})"
    )
    assert "Alertmanager 0.25 (the version this is checked with" not in text


class _Receiver:
    """deploy/webhook_receiver.py as a real subprocess on 127.0.0.1 (port picked by the OS)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        assert self.proc.stderr is not None
        stderr = self.proc.stderr
        threading.Thread(target=lambda: [self.lines.put(line) for line in stderr], daemon=True).start()
        self.log: list[str] = []
        self.url = f"http://127.0.0.1:{self._port()}"

    def _port(self) -> int:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"receiver exited {self.proc.returncode}: {self.log}"
                continue
            self.log.append(line)
            if match := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                return int(match.group(1))
        raise AssertionError(f"receiver did not announce its port: {self.log}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """(status, headers, JSON body) of one request; `headers` override the defaults."""
        sent = {"Content-Type": "application/json"}
        if body is not None:
            sent["Content-Length"] = str(len(body))
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", urlsplit(self.url).port, timeout=5)
        try:
            connection.putrequest(method, path)
            for name, value in sent.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
        finally:
            connection.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("receiver ignored SIGTERM") from None


def _notification(status: str = "firing", alertname: str = "MT5BridgeDown") -> dict[str, Any]:
    """An Alertmanager webhook payload (version 4), as Alertmanager sends it."""
    labels = {"alertname": alertname, "severity": "critical", "job": "mt5-agent", "instance": "agent:8080"}
    return {
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="MT5BridgeDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "paging",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "The MT5 bridge is unreachable"},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": "The MT5 bridge is unreachable"},
                "startsAt": "2025-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": "0123456789abcdef",
            }
        ],
    }


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[_Receiver, dict[str, str]]]:
    tokens = {"paging": "paging-token-0123", "tickets": "tickets-token-4567"}
    args = []
    for name, token in tokens.items():
        path = tmp_path / f"{name}_token"
        path.write_text(token + "\n", encoding="utf-8")  # a trailing newline, as editors leave one
        args += ["--receiver", f"{name}={path}"]
    hook = _Receiver(*args)
    try:
        yield hook, tokens
    finally:
        assert hook.stop() == 0, hook.log


def test_webhook_receiver_records_notifications_and_serves_them(
    receiver: tuple[_Receiver, dict[str, str]],
) -> None:
    """Finding 10: the stack's receiver, run for real: a notification posted with its token is read back
    from GET /notifications; a wrong or missing token, an unknown receiver, non-JSON, a non-notification
    and an oversized body are refused with a clear status and never recorded."""
    hook, tokens = receiver
    assert hook.request("GET", "/healthz")[:3:2] == (200, "ok")
    assert hook.request("GET", "/notifications")[2] == []
    sent = _notification()
    status, headers, body = hook.request("POST", "/paging", json.dumps(sent).encode(), tokens["paging"])
    assert (status, body) == (200, {"ok": True})
    assert "Python" not in headers.get("Server", "") and headers["Content-Type"] == "application/json"

    refused = [
        ("/paging", json.dumps(sent).encode(), None, 401),
        ("/paging", json.dumps(sent).encode(), tokens["tickets"], 401),  # the other receiver's token
        ("/paging", json.dumps(sent).encode(), tokens["paging"] + "x", 401),
        ("/pager", json.dumps(sent).encode(), tokens["paging"], 404),
        ("/tickets", b"{not json", tokens["tickets"], 400),
        ("/tickets", b"[" * 100_000 + b"]" * 100_000, tokens["tickets"], 400),
        ("/tickets", json.dumps({"status": "firing"}).encode(), tokens["tickets"], 400),
        ("/tickets", None, tokens["tickets"], 411),  # no Content-Length
    ]
    for path, body_bytes, token, expected in refused:
        status, _, answer = hook.request("POST", path, body_bytes, token)
        assert status == expected, (path, token, status, answer)
        assert answer["error"]["message"], answer
    # over --max-body (1 MiB): refused from the header alone, before any of it is read
    big = {"Content-Length": str(2 << 20)}
    for token in (tokens["tickets"], None):
        status, _, answer = hook.request("POST", "/tickets", None, token, headers=big)
        expected = 413 if token else 401
        assert status == expected, (token, status, answer)
        assert answer["error"]["message"], answer

    resolved = _notification("resolved")
    assert hook.request("POST", "/tickets", json.dumps(resolved).encode(), tokens["tickets"])[0] == 200
    notes = hook.request("GET", "/notifications")[2]
    assert [(n["receiver"], n["status"], n["alert_count"]) for n in notes] == [
        ("paging", "firing", 1),
        ("tickets", "resolved", 1),
    ]
    assert notes[0]["payload"] == sent and notes[1]["payload"] == resolved
    assert all(n["received_at"].endswith("+00:00") for n in notes)
    only_paging = hook.request("GET", "/notifications?receiver=paging")[2]
    assert [n["payload"] for n in only_paging] == [sent]
    assert hook.request("GET", "/nope")[0] == 404


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "at least one --receiver"),
        (["--receiver", "paging=/nonexistent/token"], "cannot read the token file"),
        (["--receiver", "pag ing"], "the name must be"),
        (["--receiver", "paging", "--host", "0.0.0.0"], "refusing to bind 0.0.0.0"),
        (["--receiver", "paging", "--receiver", "paging"], "given twice"),
        (["--receiver", "notifications"], "reserved"),
    ],
)
def test_webhook_receiver_refuses_bad_start_up_with_one_line(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(RECEIVER), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_real_alertmanager_delivers_to_the_webhook_receiver(
    tmp_path: Path, receiver: tuple[_Receiver, dict[str, str]]
) -> None:
    """The committed alertmanager.yml, with only the service host rewritten to loopback and the timings
    shortened, delivers a critical alert to the receiver's paging path with the paging token."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    require(binary is not None, "`prometheus-alertmanager` (or `alertmanager`) not found on PATH")
    assert binary is not None
    hook, tokens = receiver
    config = yaml.safe_load(ALERTMANAGER_YML.read_text(encoding="utf-8"))
    for route in (config["route"], *config["route"]["routes"]):
        route["group_wait"] = "0s"
    for rcv in config["receivers"]:
        for webhook in rcv["webhook_configs"]:
            url = urlsplit(webhook["url"])
            webhook["url"] = f"{hook.url}{url.path}"
            token = tmp_path / Path(webhook["http_config"]["authorization"]["credentials_file"]).name
            token.write_text(tokens[url.path.strip("/")], encoding="utf-8")
            webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "alertmanager did not start"
                time.sleep(0.1)
        labels = {"alertname": "MT5BridgeDown", "severity": "critical", "job": "mt5-agent", "instance": "a:1"}
        request = urllib.request.Request(
            f"{base}/api/v2/alerts",
            data=json.dumps([{"labels": labels, "annotations": {"summary": "s"}}]).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        deadline = time.monotonic() + 20
        while not (notes := hook.request("GET", "/notifications")[2]):
            assert time.monotonic() < deadline, "no notification reached the receiver"
            time.sleep(0.1)
        [note] = notes
        assert note["receiver"] == "paging" and note["status"] == "firing"
        assert note["payload"]["alerts"][0]["labels"] == labels
        assert not any("refused" in line for line in hook.log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- .dockerignore --------------------------------------------------------------------------------


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _glob_regex(glob: str) -> str:
    """A .dockerignore glob as a regex: `**/` any directories, `*` and `?` within one path element."""
    out, i = [], 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        elif glob[i] == "[" and (end := glob.find("]", i)) > i:
            out.append(glob[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out) + r"\Z"


def _docker_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, enough for our patterns: the last matching pattern wins (`!` re-includes), a pattern
    matches the path or any of its parent directories."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(re.match(regex, candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_artefacts_out_of_the_build_context() -> None:
    patterns = _dockerignore_patterns()
    for artefact in (
        ".venv/bin/python",
        ".git/HEAD",
        "agent/__pycache__/app.cpython-311.pyc",
        "tests/e2e/__pycache__/stack.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".ruff_cache/0.1/x",
        ".hypothesis/examples/x",
        "mt5-agent.db",
        "data/agent.db-wal",
        "mt5_monitor.egg-info/PKG-INFO",
        "secrets/admin_token",
        ".coverage",
        "junit.xml",
        "tests/test_compose.py",
    ):
        assert _docker_ignored(artefact, patterns), f"{artefact} would be sent to the Docker daemon"
    # Everything the Dockerfile copies (and pip installs) stays in the context.
    git = require_tool("git")
    tracked = _run(git, "ls-files", "pyproject.toml", "README.md", "agent", "bridge", "alerts", "dashboards")
    assert tracked.returncode == 0, tracked.stderr
    files = tracked.stdout.split()
    assert "agent/app.py" in files and "pyproject.toml" in files
    dropped = [f for f in files if _docker_ignored(f, patterns)]
    assert not dropped, f".dockerignore drops files the image needs: {dropped}"
    copied = re.findall(r"^COPY (\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert not [c for c in copied if _docker_ignored(c.rstrip("*"), patterns)]
