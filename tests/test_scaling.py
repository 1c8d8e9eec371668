"""Prometheus past one server (docs/scaling.md): the shard rules (promtool check and promtool's own unit
tests: an account whose shard is down pages, not silence), their per-shard presence rules matching the
StatefulSet's shard count, and deploy/prometheus-sharded.yml rendered for every replica, accepted by
promtool, and run for real: two Prometheus replicas split six agent shards between them (each exactly
once, as hashmod predicts) and remote-write every shard's series to a third one, the long-term store's
stand-in, with the replica that scraped it as a label."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.telemetry.catalog import AGENT_JOB
from tests.ports import free_port
from tests.tools import require, require_tool

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus-shard-rules.yml"
RULE_TESTS = DEPLOY / "prometheus-shard-rules.test.yml"
SHARDED = DEPLOY / "prometheus-sharded.yml"
STATEFULSET = DEPLOY / "k8s" / "statefulset.yaml"
SCALING_DOC = REPO / "docs" / "scaling.md"


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _run(*args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(RULES)["groups"] for rule in group["rules"]]


def test_shard_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = require_tool("promtool")
    checked = _run(promtool, "check", "rules", RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=DEPLOY)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_shard_rule_tests_can_fail(tmp_path: Path) -> None:
    """The same unit tests against a rule that forgets vanished accounts (no last_over_time): they fail."""
    promtool = require_tool("promtool")
    forgetful = (
        RULES.read_text(encoding="utf-8").replace("last_over_time(", "max_over_time(").replace("[1h]", "[1m]")
    )
    (tmp_path / RULES.name).write_text(forgetful, encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0 and "MT5AccountShardDown" in result.stdout + result.stderr


def test_presence_rules_cover_every_shard_of_the_statefulset() -> None:
    [statefulset] = [d for d in yaml.safe_load_all(STATEFULSET.read_text(encoding="utf-8")) if d]
    replicas = statefulset["spec"]["replicas"]
    absent = [r for r in _rules() if r.get("alert") == "MT5AgentShardAbsent"]
    shards = [re.fullmatch(r'absent\(up\{job="mt5-agent", shard="(\d+)"\}\)', r["expr"]) for r in absent]
    assert all(shards), [r["expr"] for r in absent]
    assert sorted(int(m.group(1)) for m in shards if m) == list(range(replicas))
    for rule, match in zip(absent, shards, strict=True):
        assert match is not None and rule["labels"]["shard"] == match.group(1)


def test_shard_rules_follow_the_alert_conventions() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in SCALING_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in _rules():
        assert re.fullmatch(r"MT5[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] == "critical", "a shard down pages"
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook_url"].split("docs/scaling.md#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in docs/scaling.md"
        assert f'job="{AGENT_JOB}"' in rule["expr"]


# --- hashmod-sharded Prometheus -------------------------------------------------------------------


def _hashmod(value: str, modulus: int) -> int:
    """Prometheus' hashmod: the md5 of the value, its last 8 bytes as a big-endian integer, mod modulus."""
    return int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % modulus


def _modulus() -> int:
    moduli = {
        rule["modulus"]
        for job in _yaml(SHARDED)["scrape_configs"]
        for rule in job["relabel_configs"]
        if rule.get("action") == "hashmod"
    }
    assert len(moduli) == 1, f"every job must hash over the same replicas: {moduli}"
    return moduli.pop()


def _replica(index: int) -> dict[str, Any]:
    """deploy/prometheus-sharded.yml as replica `index` (its header says what differs)."""
    config = _yaml(SHARDED)
    config["global"]["external_labels"]["prometheus_shard"] = str(index)
    for job in config["scrape_configs"]:
        keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert keep[-1]["source_labels"] == ["__tmp_prometheus_shard"] and keep[-1]["regex"] == "0"
        keep[-1]["regex"] = str(index)
    return config


def _localised(config: dict[str, Any], tmp: Path, tag: str) -> dict[str, Any]:
    """Secret and target files in `tmp`; rule files dropped (they are checked on their own above)."""
    config = json.loads(json.dumps(config))
    config.pop("rule_files", None)
    for job in config["scrape_configs"]:
        token = tmp / f"{tag}-{job['job_name']}-token"
        token.write_text("t\n", encoding="utf-8")
        job["authorization"]["credentials_file"] = str(token)
        for sd in job.get("file_sd_configs", []):
            targets = tmp / f"{tag}-bridges.yml"
            if not targets.exists():
                targets.write_text(yaml.safe_dump([{"targets": ["127.0.0.1:9"]}]), encoding="utf-8")
            sd["files"] = [str(targets)]
    return config


def test_sharded_prometheus_config_passes_promtool_for_every_replica(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    committed = _yaml(SHARDED)
    assert committed["global"]["external_labels"]["prometheus_shard"] == "0"
    assert committed["remote_write"] and committed["remote_write"][0]["url"].startswith("http")
    assert committed["scrape_configs"][0]["job_name"] == AGENT_JOB
    for index in range(_modulus()):
        path = tmp_path / f"replica-{index}.yml"
        path.write_text(yaml.safe_dump(_localised(_replica(index), tmp_path, str(index))), encoding="utf-8")
        result = _run(promtool, "check", "config", path)
        assert result.returncode == 0, result.stdout + result.stderr


class _Prometheus:
    """A real Prometheus on 127.0.0.1 with a config file and its own data directory."""

    def __init__(self, binary: str, config: dict[str, Any], tmp: Path, name: str, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        path = tmp / f"{name}.yml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.log = (tmp / f"{name}.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={tmp / name}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *flags,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, **query: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())

    def wait_ready(self, deadline: float) -> None:
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None, f"prometheus exited {self.proc.returncode}"
                assert time.monotonic() < deadline, "prometheus did not become ready"
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_binary() -> Iterator[str]:
    binary = shutil.which("prometheus")
    require(binary is not None, "`prometheus` not found on PATH (Debian package prometheus)")
    assert binary is not None
    yield binary


def test_replicas_split_the_shards_and_remote_write_all_of_them(
    tmp_path: Path, prometheus_binary: str
) -> None:
    shards = [str(i) for i in range(6)]
    modulus = _modulus()
    expected = {j: {s for s in shards if _hashmod(s, modulus) == j} for j in range(modulus)}
    store = _Prometheus(
        prometheus_binary,
        {"global": {"scrape_interval": "1m"}},
        tmp_path,
        "store",
        "--web.enable-remote-write-receiver",
    )
    replicas: list[_Prometheus] = []
    try:
        for index in range(modulus):
            config = _localised(_replica(index), tmp_path, f"r{index}")
            config["global"].update(scrape_interval="1s", scrape_timeout="500ms")
            config.pop("alerting")
            agent_job = config["scrape_configs"][0]
            # The SRV records the headless Service would answer, as static targets on dead loopback ports:
            # the committed relabelling runs unchanged from __meta_dns_srv_record_target on.
            agent_job.pop("dns_sd_configs")
            agent_job["static_configs"] = [
                {
                    "targets": [f"127.0.0.1:{free_port()}"],
                    "labels": {
                        "__meta_dns_srv_record_target": f"mt5-agent-{s}.mt5-agent.mt5.svc.cluster.local."
                    },
                }
                for s in shards
            ]
            config["remote_write"][0]["url"] = f"{store.url}/api/v1/write"
            config["remote_write"][0]["queue_config"]["batch_send_deadline"] = "500ms"
            replicas.append(_Prometheus(prometheus_binary, config, tmp_path, f"replica{index}"))
        deadline = time.monotonic() + 60
        for server in (store, *replicas):
            server.wait_ready(deadline)

        seen: dict[int, set[str]] = {}
        for index, replica in enumerate(replicas):
            while True:
                targets = replica.get("/api/v1/targets", state="active")["data"]["activeTargets"]
                agents = [t for t in targets if t["labels"]["job"] == AGENT_JOB]
                if agents:
                    break
                assert time.monotonic() < deadline, f"replica {index} discovered no agent shard"
                time.sleep(0.2)
            seen[index] = {t["labels"]["shard"] for t in agents}
            assert {t["labels"]["instance"] for t in agents} == {f"mt5-agent-{s}" for s in seen[index]}
        assert seen == expected, "each agent shard on exactly the replica hashmod gives it"
        assert set().union(*seen.values()) == set(shards)

        query = f'group by (shard, prometheus_shard) (up{{job="{AGENT_JOB}"}})'
        while True:
            result = store.get("/api/v1/query", query=query)["data"]["result"]
            got = {(r["metric"]["shard"], r["metric"]["prometheus_shard"]) for r in result}
            if len(got) >= len(shards):
                break
            assert time.monotonic() < deadline, f"remote write delivered only {sorted(got)}"
            time.sleep(0.3)
        assert got == {(s, str(j)) for j, owned in expected.items() for s in owned}
    finally:
        for server in (*replicas, store):
            server.stop()


# --- compose: two shards on one machine ------------------------------------------------------------

COMPOSE = REPO / "compose.yaml"
COMPOSE_SHARDS = DEPLOY / "compose.shards.yaml"
COMPOSE_PROMETHEUS = DEPLOY / "prometheus-compose-shards.yml"
COMPOSE_SCHEMA = REPO.parent / "shared" / "schemas" / "compose-spec.schema.json"


def _merged_compose(tmp_path: Path) -> dict[str, Any]:
    """`docker-compose -f compose.yaml -f deploy/compose.shards.yaml --profile shards config` in a copy of
    the project with dummy secret files."""
    tool = require_tool("docker-compose")
    project = tmp_path / "project"
    for part in ("deploy", "alerts", "dashboards"):
        shutil.copytree(REPO / part, project / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(COMPOSE, project / COMPOSE.name)
    (project / "secrets").mkdir()
    for secret in _yaml(COMPOSE)["secrets"].values():
        (project / secret["file"]).write_text("dummy", encoding="utf-8")
    args = ("-f", "compose.yaml", "-f", "deploy/compose.shards.yaml", "--profile", "shards", "config")
    result = _run(tool, *args, cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    return yaml.safe_load(result.stdout)


def _shard_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if name.startswith("agent-shard-")}


def test_compose_shards_file_and_merge_validate_against_compose_spec(tmp_path: Path) -> None:

    require(
        COMPOSE_SCHEMA.is_file(), f"compose JSON schema not found at {COMPOSE_SCHEMA} (../shared/schemas)"
    )
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8")))
    for name, document in (("override", _yaml(COMPOSE_SHARDS)), ("merged", _merged_compose(tmp_path))):
        errors = list(validator.iter_errors(document))
        assert not errors, (
            name + ": " + "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors)
        )


def test_compose_runs_two_shards_instead_of_the_single_agent(tmp_path: Path) -> None:
    services = _merged_compose(tmp_path)["services"]
    shards = _shard_services(services)
    assert set(shards) == {"agent-shard-0", "agent-shard-1"}
    assert services["agent"]["profiles"] == ["single"], "the single agent would sync every account too"
    single = _yaml(COMPOSE)["services"]["agent"]
    published = set()
    for name, shard in shards.items():
        index = name.rsplit("-", 1)[1]
        env = shard["environment"]
        assert env["MT5_AGENT_SHARD"] == f"{index}/{len(shards)}"
        assert shard["profiles"] == ["shards"]
        assert shard["command"] == single["command"]
        # the single agent's settings, store and secrets (as files) unchanged, plus the shard
        assert {k: v for k, v in env.items() if k != "MT5_AGENT_SHARD"} == single["environment"]
        assert sorted(s if isinstance(s, str) else s["source"] for s in shard["secrets"]) == sorted(
            single["secrets"]
        )
        assert set(shard["depends_on"]) == {"mongodb", "bridge", "bridge-b"}
        assert all(dep["condition"] == "service_healthy" for dep in shard["depends_on"].values())
        assert "/readyz" in " ".join(shard["healthcheck"]["test"])
        [port] = shard["ports"]
        # docker-compose 1.x keeps the short form, 2.x gives the long one
        host_ip, host_port, target = (
            port.split(":")
            if isinstance(port, str)
            else (port["host_ip"], str(port["published"]), str(port["target"]))
        )
        assert host_ip == "127.0.0.1" and target.removesuffix("/tcp") == env["MT5_AGENT_LISTEN"].split(":")[1]
        published.add(host_port)
    assert len(published) == len(shards)
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]).name == COMPOSE_PROMETHEUS.name
    assert Path(mounts["/etc/prometheus/rules/mt5-shards.yml"]).name == RULES.name


def test_compose_prometheus_scrapes_each_shard_and_passes_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = _yaml(COMPOSE_PROMETHEUS)
    [agent_job] = [job for job in config["scrape_configs"] if job["job_name"] == AGENT_JOB]
    shards = _shard_services(_yaml(COMPOSE_SHARDS)["services"])
    targets = {t: group["labels"]["shard"] for group in agent_job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8080": name.rsplit("-", 1)[1] for name in shards}
    absent = {r["labels"]["shard"] for r in _rules() if r.get("alert") == "MT5AgentShardAbsent"}
    assert absent == set(targets.values())
    # the rest of the stack's Prometheus unchanged
    single = _yaml(DEPLOY / "prometheus.yml")
    assert [j for j in config["scrape_configs"] if j is not agent_job] == [
        j for j in single["scrape_configs"] if j["job_name"] != AGENT_JOB
    ]
    # promtool with the rule files where the mounts put them and the secrets in a temporary directory
    (tmp_path / "rules").mkdir()
    shutil.copy(REPO / "alerts" / "rules.yml", tmp_path / "rules" / "mt5.yml")
    shutil.copy(RULES, tmp_path / "rules" / "mt5-shards.yml")
    for job in config["scrape_configs"]:
        if "authorization" in job:
            token = tmp_path / f"{job['job_name']}-token"
            token.write_text("t\n", encoding="utf-8")
            job["authorization"]["credentials_file"] = str(token)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = _run(promtool, "check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Alertmanager: one page per shard, not per account ------------------------------------------------

ALERTMANAGER_YML = REPO / "alerts" / "alertmanager.yml"
SHARD_ROUTE = DEPLOY / "alertmanager-shards-route.yml"
RECEIVER = DEPLOY / "webhook_receiver.py"


class _Hook:
    """deploy/webhook_receiver.py on 127.0.0.1 (the OS picks the port; it announces it on stderr)."""

    def __init__(self, tmp: Path) -> None:
        self.token = "paging-token-0123"
        (tmp / "paging_token").write_text(self.token, encoding="utf-8")
        token = tmp / "paging_token"
        receivers = ("--receiver", f"paging={token}", "--receiver", f"tickets={token}")
        self.proc = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--host", "127.0.0.1", "--port", "0", *receivers],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 15
        while True:
            line = self.proc.stderr.readline()
            if match := re.search(r"listening on (http://127\.0\.0\.1:\d+)", line):
                self.url = match.group(1)
                break
            assert line and time.monotonic() < deadline, f"receiver did not start ({self.proc.poll()})"

    def notifications(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/notifications?receiver=paging", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _alertmanager_config(hook: _Hook, tmp: Path, with_route: bool) -> Path:
    config = _yaml(ALERTMANAGER_YML)
    if with_route:
        config["route"]["routes"] = _yaml(SHARD_ROUTE) + config["route"]["routes"]
    config["route"]["group_wait"] = "0s"
    for receiver in config["receivers"]:
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = hook.url + urllib.parse.urlsplit(webhook["url"]).path
            webhook["http_config"]["authorization"]["credentials_file"] = str(tmp / "paging_token")
    path = tmp / f"alertmanager-{with_route}.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _pages_for_a_shard_down(binary: str, config: Path, hook: _Hook, tmp: Path) -> list[dict[str, Any]]:
    """Three accounts of shard 1 firing MT5AccountShardDown in a real Alertmanager: the paging
    notifications it sends once it has settled (every alert delivered)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / config.stem}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    before = len(hook.notifications())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "alertmanager did not start"
                time.sleep(0.1)
        labels = {"alertname": "MT5AccountShardDown", "severity": "critical", "job": AGENT_JOB, "shard": "1"}
        alerts = [
            {"labels": {**labels, "account": a}, "annotations": {"summary": a}} for a in ("11", "13", "15")
        ]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=5).close()
        while True:
            pages = hook.notifications()[before:]
            if sum(len(p["payload"]["alerts"]) for p in pages) >= len(alerts):
                return pages
            assert time.monotonic() < deadline, f"only {pages} delivered"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_shard_down_is_one_page_with_the_shard_route(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    require(binary is not None, "`prometheus-alertmanager` (or `alertmanager`) not found on PATH")
    assert binary is not None
    hook = _Hook(tmp_path)
    try:
        routed = _alertmanager_config(hook, tmp_path, with_route=True)
        checked = _run(amtool, "check-config", routed)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        found = _run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={routed}",
            "--verify.receivers=paging",
            "alertname=MT5AccountShardDown",
            "severity=critical",
            "shard=1",
            "account=11",
        )
        assert found.returncode == 0, found.stdout + found.stderr
        [page] = _pages_for_a_shard_down(binary, routed, hook, tmp_path)
        assert page["payload"]["groupLabels"] == {
            "alertname": "MT5AccountShardDown",
            "job": AGENT_JOB,
            "shard": "1",
        }
        assert sorted(a["labels"]["account"] for a in page["payload"]["alerts"]) == ["11", "13", "15"]
        # without it, the stack's default grouping pages once per account
        default = _pages_for_a_shard_down(binary, _alertmanager_config(hook, tmp_path, False), hook, tmp_path)
        assert len(default) == 3
    finally:
        hook.stop()
