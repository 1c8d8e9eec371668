"""Alert rules, their promtool tests, the runbook and alertmanager.yml, checked with the real tools."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.freshness import Thresholds
from alerts import render
from alerts._tools import require, require_tool
from tests.ports import free_port

ALERTS_DIR = Path(__file__).resolve().parent
RULES = ALERTS_DIR / "rules.yml"
TESTS = ALERTS_DIR / "tests.yml"
RUNBOOK = ALERTS_DIR / "RUNBOOK.md"
ALERTMANAGER = ALERTS_DIR / "alertmanager.yml"

# DESIGN.md section 9 (contract names) and the minimum set.
REQUIRED = {
    "MT5AccountDataDegraded": "warning",
    "MT5AccountDataCritical": "critical",
    "MT5BridgeDown": "critical",
    "MT5AccountSyncFailing": "warning",
    "MT5StoreDown": "critical",
    "MT5AgentDown": "critical",
    "MT5AgentMetricsAbsent": "critical",
    "MT5SyncSuccessRateLow": "warning",
}
RECEIVER = {"critical": "paging", "warning": "tickets"}


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _alerts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def _committed() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# --- rendering ---------------------------------------------------------------------------------


def test_committed_rules_equal_render(tmp_path: Path) -> None:
    [path] = render.render_files(tmp_path, Thresholds())
    assert path.name == "rules.yml"
    assert RULES.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
        "alerts/rules.yml is stale: regenerate it with `mt5-agent render alerts`"
    )


def test_render_is_stable_and_parses_back(tmp_path: Path) -> None:
    first = render.dump(render.rules(Thresholds()))
    assert first == render.dump(render.rules(Thresholds()))
    assert yaml.safe_load(first) == render.rules(Thresholds())


def test_required_alerts_with_severity() -> None:
    alerts = _alerts(_committed())
    assert {name: a["labels"]["severity"] for name, a in alerts.items() if name in REQUIRED} == REQUIRED
    assert all(name.startswith("MT5") and name.isidentifier() for name in alerts)
    assert len(alerts) == len(render.alert_names(_committed())), "duplicate alert names"


def test_every_alert_has_annotations_and_runbook_entry() -> None:
    headings = {
        _github_anchor(m.group(1))
        for m in re.finditer(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    }
    for name, alert in _alerts(_committed()).items():
        labels, ann = alert["labels"], alert["annotations"]
        assert labels["severity"] in RECEIVER, name
        assert ann["summary"].strip() and ann["description"].strip(), name
        base, _, anchor = ann["runbook_url"].partition("#")
        assert base == render.RUNBOOK_BASE, name
        assert anchor in headings, f"{name}: RUNBOOK.md has no heading for #{anchor}"
        if "account" in alert["expr"] and "on(account)" in alert["expr"]:
            assert "{{ $labels.account }}" in ann["description"], name
            assert "group_left(name)" in alert["expr"], f"{name} must carry the account name"


def test_age_alerts_describe_age_humanized() -> None:
    alerts = _alerts(_committed())
    for name in ("MT5AccountDataDegraded", "MT5AccountDataCritical"):
        assert "time() - mt5_account_last_sync_timestamp_seconds" in alerts[name]["expr"]
        assert "{{ $value | humanizeDuration }}" in alerts[name]["annotations"]["description"]


def test_thresholds_drive_the_rules(tmp_path: Path) -> None:
    short = Thresholds(30, 60, 90)
    [path] = render.render_files(tmp_path, short, runbook_base="https://example.invalid/RUNBOOK.md")
    alerts = _alerts(yaml.safe_load(path.read_text(encoding="utf-8")))
    degraded, critical = alerts["MT5AccountDataDegraded"], alerts["MT5AccountDataCritical"]
    assert "mt5_account_last_sync_timestamp_seconds >= 60\n" in degraded["expr"]
    assert "mt5_account_last_sync_timestamp_seconds >= 90\n" in critical["expr"]
    assert 'mt5_account_freshness_state{state="critical"} offset 1m30s' in critical["expr"]
    assert "degraded from 1m, critical from 1m30s" in degraded["annotations"]["description"]
    assert not re.search(r"\b(600|900|10m|15m)\b", degraded["expr"] + critical["expr"])
    assert (
        critical["annotations"]["runbook_url"] == "https://example.invalid/RUNBOOK.md#mt5accountdatacritical"
    )
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_timings_drive_for(tmp_path: Path) -> None:
    timings = render.AlertTimings(bridge_down="30s", data="15s")
    doc = render.rules(Thresholds(), timings=timings)
    alerts = _alerts(doc)
    assert alerts["MT5BridgeDown"]["for"] == "30s"
    assert alerts["MT5AccountDataCritical"]["for"] == "15s"
    assert _alerts(render.rules(Thresholds()))["MT5BridgeDown"]["for"] == "10m"
    with pytest.raises(ValueError, match="bridge_down"):
        render.AlertTimings(bridge_down="ten minutes")


def test_success_ratio_counts_every_run_result() -> None:
    """Product decision: skipped runs (bridge down) count as unsuccessful, like partial and failed."""
    recording = {
        r["record"]: r["expr"]
        for g in render.rules(Thresholds())["groups"]
        for r in g["rules"]
        if "record" in r
    }
    for expr in (recording[render.SUCCESS_RATIO_RECORD], render.success_ratio_expr()):
        numerator, _, denominator = expr.partition("\n/\n")
        assert 'result="success"' in numerator
        assert "result" not in denominator.replace("result:mt5_sync_runs", ""), denominator


@pytest.mark.parametrize(
    ("seconds", "text"), [(900, "15m"), (90, "1m30s"), (600.0, "10m"), (3600, "1h"), (0.5, "500ms")]
)
def test_prom_duration(seconds: float, text: str) -> None:
    assert render.prom_duration(seconds) == text


# --- promtool ----------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    n_rules = sum(len(g["rules"]) for g in _committed()["groups"])
    assert f"SUCCESS: {n_rules} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    result = _run(promtool, "test", "rules", TESTS.name, cwd=ALERTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_on_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are sensitive: a rule rendered with other thresholds must fail them."""
    promtool = require_tool("promtool")
    render.render_files(tmp_path, Thresholds(300, 601, 900))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = _run(promtool, "test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "MT5AccountDataDegraded" in result.stdout + result.stderr


def test_every_alert_is_unit_tested_quiet_and_firing() -> None:
    tests = yaml.safe_load(TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["rules.yml"]
    quiet: set[str] = set()
    firing: dict[str, list[dict[str, Any]]] = {}
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            if case["exp_alerts"]:
                firing.setdefault(case["alertname"], []).extend(case["exp_alerts"])
            else:
                quiet.add(case["alertname"])
    names = set(_alerts(_committed()))
    assert names <= quiet, f"no quiet (before for:/after recovery) case for {names - quiet}"
    assert names <= set(firing), f"no firing case for {names - set(firing)}"
    for name, expected in firing.items():
        for alert in expected:
            assert "severity" in alert["exp_labels"], name
            assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, name


# --- alertmanager ------------------------------------------------------------------------------


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool")
    result = _run(amtool, "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_config_has_no_inline_secrets() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["alertname", "account"]
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            auth = hook["http_config"]["authorization"]
            assert "credentials" not in auth
            assert auth["credentials_file"].startswith("/etc/alertmanager/secrets/")
            assert hook["url"].startswith("http://127.0.0.1:"), "placeholder URLs only; real ones are secret"


@pytest.mark.parametrize("alert", sorted(REQUIRED))
def test_amtool_routes_alert_by_severity(alert: str) -> None:
    amtool = require_tool("amtool")
    severity = _alerts(_committed())[alert]["labels"]["severity"]
    expected = RECEIVER[severity]
    args = ("config", "routes", "test", f"--config.file={ALERTMANAGER}")
    result = _run(
        amtool, *args, f"--verify.receivers={expected}", f"alertname={alert}", f"severity={severity}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == expected
    other = next(r for r in RECEIVER.values() if r != expected)
    wrong = _run(amtool, *args, f"--verify.receivers={other}", f"alertname={alert}", f"severity={severity}")
    assert wrong.returncode != 0


def _http(url: str, payload: object | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def test_alertmanager_inhibits_account_alerts_while_bridge_down(tmp_path: Path) -> None:
    """Real Alertmanager on loopback: BridgeDown mutes per-account alerts of the same agent only."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    require(binary is not None, "`prometheus-alertmanager` (or `alertmanager`) not found on PATH")
    assert binary is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={ALERTMANAGER}",
            f"--storage.path={tmp_path}",
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
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("alertmanager did not become ready")
                time.sleep(0.1)
        agent = {"job": "mt5-agent", "instance": "agent:8080"}
        other = {"job": "mt5-agent", "instance": "agent-b:8080"}
        alerts = [
            {"alertname": "MT5BridgeDown", "severity": "critical", **agent},
            {"alertname": "MT5AccountDataCritical", "severity": "critical", "account": "1002", **agent},
            {"alertname": "MT5AccountSyncFailing", "severity": "warning", "account": "1002", **agent},
            {"alertname": "MT5AccountDataCritical", "severity": "critical", "account": "2001", **other},
            {"alertname": "MT5AccountDataDegraded", "severity": "warning", "account": "2001", **other},
        ]
        _http(f"{base}/api/v2/alerts", [{"labels": labels} for labels in alerts])
        deadline = time.monotonic() + 10
        while True:
            got = _http(f"{base}/api/v2/alerts")
            state = {(a["labels"]["alertname"], a["labels"].get("account")): a["status"] for a in got}
            if len(state) == len(alerts) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        inhibited = {key for key, status in state.items() if status["inhibitedBy"]}
        assert inhibited == {
            ("MT5AccountDataCritical", "1002"),
            ("MT5AccountSyncFailing", "1002"),
            ("MT5AccountDataDegraded", "2001"),  # by MT5AccountDataCritical of the same account
        }
        assert state[("MT5BridgeDown", None)]["state"] == "active"
        assert state[("MT5AccountDataCritical", "2001")]["state"] == "active"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
