"""compose.yaml and deploy/: schema-valid, accepted by docker-compose, healthy ordering, no inline secrets."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from alerts._tools import require, require_tool
from dashboards import render as dashboards_render

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "compose.yaml"
SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.schema.json"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PUBLISHED = {"agent": "8080", "prometheus": "9090", "grafana": "3000"}
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
        "agent",
        "prometheus",
        "alertmanager",
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
    assert set(services["agent"]["depends_on"]) == {"mongodb", "bridge"}
    assert "agent" not in services["prometheus"].get("depends_on", {}), "Prometheus must watch a down agent"
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}

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
    assert services["agent"]["command"] == ["mt5-agent", "run"]
    for name in ("bridge", "agent"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert services[name]["command"][0] in scripts, f"{name} runs a console script pyproject lacks"
    assert "/readyz" in " ".join(services["agent"]["healthcheck"]["test"])
    env = services["agent"]["environment"]
    assert env["MT5_AGENT_STORE_URL"] == "mongodb://mongodb:27017"
    assert env["MT5_AGENT_BRIDGE_URL"] == "http://bridge:8000"
    assert env["MT5_AGENT_LISTEN"] == "0.0.0.0:8080"
    assert env["MT5_AGENT_BRIDGE_TOKEN_FILE"] == "/run/secrets/bridge_token"
    assert env["MT5_AGENT_ADMIN_TOKEN_FILE"] == "/run/secrets/admin_token"
    assert services["bridge"]["environment"]["MT5_BRIDGE_TOKEN_FILE"] == "/run/secrets/bridge_token"


def test_only_agent_prometheus_grafana_published_on_loopback() -> None:
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
    result = _run(promtool, "check", "config", tmp_path / config_file.lstrip("/"), cwd=tmp_path)
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


@pytest.mark.parametrize("service", ["bridge", "agent"])
def test_app_services_use_the_project_image(service: str) -> None:
    spec = _services()[service]
    assert spec["build"]["context"] == "."
    assert spec["image"] == _services()["agent"]["image"]
