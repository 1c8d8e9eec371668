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

from agent.domain.freshness import Thresholds
from alerts import render
from tests.ports import free_port
from tests.tools import require, require_tool

REPO = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO / "alerts"
RULES = ALERTS_DIR / "rules.yml"
TESTS = ALERTS_DIR / "tests.yml"
RUNBOOK = ALERTS_DIR / "RUNBOOK.md"
ALERTMANAGER = ALERTS_DIR / "alertmanager.yml"

# DESIGN.md section 9 (contract names) and the minimum set: name -> severities of its rules.
REQUIRED = {
    "MT5AccountDataDegraded": {"warning"},
    "MT5AccountDataCritical": {"critical"},
    "MT5BridgeDown": {"critical"},
    "MT5AccountSyncFailing": {"warning"},
    "MT5AccountPositionsStale": {"warning"},
    "MT5StoreDown": {"critical"},
    "MT5AgentDown": {"critical"},
    "MT5AgentMetricsAbsent": {"critical"},
    # burn-rate alerts: fast windows page, slow windows open a ticket
    "MT5SyncSuccessRateLow": {"critical", "warning"},
    # risk (DESIGN.md 12): a ticket at the margin call level, a page near the stop-out
    "MT5AccountMarginLevelLow": {"critical", "warning"},
    "MT5AccountDrawdownHigh": {"warning"},
}
RECEIVER = {"critical": "paging", "warning": "tickets"}
# The SRE workbook's multi-window multi-burn-rate pairs: (long, short, factor, severity).
WORKBOOK = [("1h", "5m", 14.4, "critical"), ("6h", "30m", 6, "critical"), ("1d", "2h", 3, "warning")]
WORKBOOK.append(("3d", "6h", 1, "warning"))
# Seed schedule and stack defaults the alert timings are designed around (finding 9).
SEED_SYNC_S = 300.0  # cron 1-59/5
PROBE_S = 15.0  # MT5_AGENT_PROBE_INTERVAL default
SCRAPE_S = 15.0  # deploy/prometheus.yml
EVAL_S = 15.0
GROUP_WAIT_S = 30.0  # alertmanager.yml route.group_wait


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _alert_rules(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _alerts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alert rules by name (the first rule of a name; MT5SyncSuccessRateLow has one per window pair)."""
    out: dict[str, dict[str, Any]] = {}
    for rule in _alert_rules(doc):
        out.setdefault(rule["alert"], rule)
    return out


def _committed() -> dict[str, Any]:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matchers) of every metric selector with braces in a PromQL expression."""
    return re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr)


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
    severities: dict[str, set[str]] = {}
    for rule in _alert_rules(_committed()):
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert {name: sev for name, sev in severities.items() if name in REQUIRED} == REQUIRED
    assert all(name.startswith("MT5") and name.isidentifier() for name in severities)
    identities = [(r["alert"], tuple(sorted(r["labels"].items()))) for r in _alert_rules(_committed())]
    assert len(identities) == len(set(identities)), "two rules of one name with the same labels"


def test_every_alert_has_annotations_and_runbook_entry() -> None:
    headings = {
        _github_anchor(m.group(1))
        for m in re.finditer(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    }
    for alert in _alert_rules(_committed()):
        name, labels, ann = alert["alert"], alert["labels"], alert["annotations"]
        assert labels["severity"] in RECEIVER, name
        assert ann["summary"].strip() and ann["description"].strip(), name
        base, _, anchor = ann["runbook_url"].partition("#")
        assert base == render.RUNBOOK_BASE, name
        assert anchor == name.lower() and anchor in headings, f"{name}: RUNBOOK.md has no heading #{anchor}"
        if "account" in alert["expr"] and "on(account)" in alert["expr"]:
            assert "{{ $labels.account }}" in ann["description"], name
            assert "group_left(name, source)" in alert["expr"], f"{name} must carry the name and source"


def test_age_alerts_compare_with_the_agents_thresholds() -> None:
    """Finding 11: the age alerts read the agent's own thresholds (per target), with a fallback."""
    alerts = _alerts(_committed())
    for name, state, fallback in (
        ("MT5AccountDataDegraded", "degraded", 600),
        ("MT5AccountDataCritical", "critical", 900),
    ):
        expr = alerts[name]["expr"]
        assert 'mt5_account_data_age_seconds{job="mt5-agent"}\n  >= on(job, instance) group_left()' in expr
        assert f'mt5_freshness_threshold_seconds{{job="mt5-agent", state="{state}"}}' in expr
        assert f"or on(job, instance)\n    {fallback} * group by (job, instance)" in expr
        description = alerts[name]["annotations"]["description"]
        assert "{{ $value | humanizeDuration }}" in description
        assert f'state="{state}"}}` $labels.job $labels.instance | query' in description


def test_rendered_thresholds_are_only_the_fallback(tmp_path: Path) -> None:
    short = Thresholds(30, 60, 90)
    [path] = render.render_files(tmp_path, short, runbook_url="https://example.invalid/RUNBOOK.md#{anchor}")
    alerts = _alerts(yaml.safe_load(path.read_text(encoding="utf-8")))
    degraded, critical = alerts["MT5AccountDataDegraded"], alerts["MT5AccountDataCritical"]
    assert "or on(job, instance)\n    60 * group by" in degraded["expr"]
    assert "or on(job, instance)\n    90 * group by" in critical["expr"]
    assert 'mt5_account_freshness_state{job="mt5-agent", state="critical"} offset 1m30s' in critical["expr"]
    assert "{{ else }}1m 0s{{ end }}, critical from" in degraded["annotations"]["description"]
    assert not re.search(r"\b(600|900|10m|15m)\b", degraded["expr"] + critical["expr"])
    assert (
        critical["annotations"]["runbook_url"] == "https://example.invalid/RUNBOOK.md#mt5accountdatacritical"
    )
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_options_job_selector_and_runbook_url(tmp_path: Path) -> None:
    """Finding 11: the job selector and the runbook URL pattern are render options (defaults unchanged)."""
    job = 'job=~"mt5-agent-.+", env="prod"'
    [path] = render.render_files(
        tmp_path, Thresholds(), job_selector=job, runbook_url="https://wiki.example/mt5/{alertname}"
    )
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    promql = [r["expr"] for g in doc["groups"] for r in g["rules"]]
    selectors = [sel for expr in promql for sel in _selectors(expr)]
    assert len(selectors) > 20
    for metric, matchers in selectors:
        assert metric.startswith(("mt5_", "up")), metric
        assert matchers.startswith(job), (metric, matchers)
    bare = [m for expr in promql for m in re.findall(r"\b(?:mt5_\w+|up)\b(?![{\w])", expr)]
    assert not [m for m in bare if not m.startswith("mt5_sync_runs_errors")], bare
    for alert in _alert_rules(doc):
        assert alert["annotations"]["runbook_url"] == f"https://wiki.example/mt5/{alert['alert']}"
    assert (
        'mt5_sync_runs_total{job=~"mt5-agent-.+", env="prod"} has been absent'
        in (_alerts(doc)["MT5AgentMetricsAbsent"]["annotations"]["description"])
    )
    promtool = require_tool("promtool")
    result = _run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    # defaults unchanged
    default = render.rules(Thresholds())
    assert (
        render.rules(Thresholds(), job_selector='job="mt5-agent"', runbook_url=render.RUNBOOK_URL) == default
    )
    assert _alerts(default)["MT5AgentDown"]["expr"] == 'up{job="mt5-agent"} == 0'


@pytest.mark.parametrize("selector", ["", "mt5-agent", 'job="a"}', "job=mt5", 'job="a",', '{job="a"}'])
def test_bad_job_selector_is_refused(selector: str) -> None:
    with pytest.raises(ValueError, match="job selector"):
        render.rules(Thresholds(), job_selector=selector)


@pytest.mark.parametrize("pattern", ["https://x/{name}", "https://x/{anchor", "", "https://x/{0}"])
def test_bad_runbook_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="runbook URL pattern"):
        render.rules(Thresholds(), runbook_url=pattern)


def test_timings_drive_for(tmp_path: Path) -> None:
    timings = render.AlertTimings(bridge_down="30s", data="15s", burn_keep_firing="1m")
    doc = render.rules(Thresholds(), timings=timings)
    alerts = _alerts(doc)
    assert alerts["MT5BridgeDown"]["for"] == "30s"
    assert alerts["MT5AccountDataCritical"]["for"] == "15s"
    assert alerts["MT5SyncSuccessRateLow"]["keep_firing_for"] == "1m"
    assert _alerts(render.rules(Thresholds()))["MT5BridgeDown"]["for"] == "2m"
    with pytest.raises(ValueError, match="bridge_down"):
        render.AlertTimings(bridge_down="ten minutes")


def test_bridge_down_fires_before_any_account_can_turn_degraded() -> None:
    """Finding 9, as arithmetic over the defaults. Worst case: the bridge dies just before a sync, so the
    last live data is one schedule old; the agent's next probe sees it, the next scrape and evaluation
    carry it, `for:` runs, and Alertmanager waits group_wait: all of it must end before an account's age
    reaches the degraded threshold (when MT5AccountDataDegraded would only start its own `for:`)."""
    bridge_down = render.duration_seconds(render.DEFAULT_TIMINGS.bridge_down)
    worst = SEED_SYNC_S + PROBE_S + SCRAPE_S + EVAL_S + bridge_down + EVAL_S + GROUP_WAIT_S
    assert worst < Thresholds().degraded_after, (worst, Thresholds().degraded_after)
    # The per-account alerts are inhibited only if MT5BridgeDown carries the labels the inhibition needs.
    bridge = _alerts(_committed())["MT5BridgeDown"]
    assert bridge["expr"] == 'mt5_bridge_up{job="mt5-agent"} == 0'
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    [rule] = [r for r in config["inhibit_rules"] if r["source_matchers"] == ['alertname="MT5BridgeDown"']]
    targets = rule["target_matchers"][0]
    for name in ("MT5AccountDataDegraded", "MT5AccountDataCritical", "MT5AccountSyncFailing"):
        assert name in targets
    assert rule["equal"] == ["job", "instance", "source"]  # a dead source mutes its own accounts only


def test_bridge_down_is_held_until_the_accounts_had_a_sync() -> None:
    """The other end of the race: the bridge answers again, MT5BridgeDown resolves within seconds, but the
    accounts stay stale until their next sync (up to one schedule later); their alerts, no longer
    inhibited, would page for every account on recovery. BridgeDown is held (keep_firing_for) until the
    worst-case sync after recovery has been scraped and evaluated, with Alertmanager's group_wait left."""
    keep = render.duration_seconds(render.DEFAULT_TIMINGS.bridge_down_keep_firing)
    stale_until = SEED_SYNC_S + SCRAPE_S + EVAL_S  # after the bridge answers, plus the sync itself
    assert keep + PROBE_S > stale_until + GROUP_WAIT_S, (keep, stale_until)
    assert _alerts(_committed())["MT5BridgeDown"]["keep_firing_for"] == "7m"


def test_success_rate_is_multi_window_multi_burn_rate() -> None:
    """Finding 11: one 7-day ratio replaced by the SRE workbook's four window pairs against 99 %."""
    doc = render.rules(Thresholds())
    assert [(b.long, b.short, b.factor, b.severity) for b in render.BURN_WINDOWS] == WORKBOOK
    slo = [r for r in _alert_rules(doc) if r["alert"] == "MT5SyncSuccessRateLow"]
    assert [(r["labels"]["window"], r["labels"]["severity"]) for r in slo] == [(w[0], w[3]) for w in WORKBOOK]
    records = {r["record"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "record" in r}
    for rule, (long, short, factor, _) in zip(slo, WORKBOOK, strict=True):
        limit = render.prom_number(round(factor * (1 - render.SUCCESS_OBJECTIVE), 10))
        pair = (f"mt5:sync_runs_errors:ratio_rate{w} > {limit}" for w in (long, short))
        assert rule["expr"] == "\nand\n".join(pair)
        assert rule["keep_firing_for"] == render.DEFAULT_TIMINGS.burn_keep_firing
        for window in (long, short):
            expr = records[f"mt5:sync_runs_errors:ratio_rate{window}"]
            assert expr == render.error_ratio_expr(window)
    assert not [name for name in records if "7d" in name], "the 7-day ratio is no longer an alert input"


def test_error_ratio_counts_every_result_but_success() -> None:
    """Product decision: skipped runs (bridge down) count against the objective, like partial and
    failed, and so does any result the agent adds later."""
    expr = render.error_ratio_expr("1h")
    numerator, _, denominator = expr.partition("/ on(job, instance)")
    assert 'result!="success"' in numerator
    assert "result" not in denominator, denominator
    assert "> 0" in denominator, "no runs in the window must give no ratio, not NaN"
    good, _, total = render.success_ratio_expr().partition("\n/\n")
    assert 'result="success"' in good and "result" not in total


@pytest.mark.parametrize(
    ("seconds", "text"), [(900, "15m"), (90, "1m30s"), (600.0, "10m"), (3600, "1h"), (0.5, "500ms")]
)
def test_prom_duration(seconds: float, text: str) -> None:
    assert render.prom_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "10m 0s"), (9, "9s"), (90061, "1d 1h 1m 1s"), (3600, "1h 0m 0s"), (1.5, "1.5s")],
)
def test_humanize_duration_matches_prometheus(seconds: float, text: str) -> None:
    assert render.humanize_duration(seconds) == text


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


@pytest.mark.parametrize(
    ("options", "failing"),
    [
        ({"thresholds": Thresholds(300, 601, 900)}, "MT5AccountDataDegraded"),
        ({"timings": render.AlertTimings(bridge_down="10m")}, "MT5BridgeDown"),
        ({"timings": render.AlertTimings(bridge_down_keep_firing="1m")}, "MT5BridgeDown"),
        ({"timings": render.AlertTimings(burn_keep_firing="1m")}, "MT5SyncSuccessRateLow"),
        ({"risk": render.RiskLevels(margin_call=0.8)}, "MT5AccountMarginLevelLow"),
        ({"risk": render.RiskLevels(stop_out_headroom=0.05)}, "MT5AccountMarginLevelLow"),
        ({"risk": render.RiskLevels(drawdown_day=0.1)}, "MT5AccountDrawdownHigh"),
        ({"risk": render.RiskLevels(drawdown_tracking=0.3)}, "MT5AccountDrawdownHigh"),
        ({"risk": render.RiskLevels(drawdown_for="10m")}, "MT5AccountDrawdownHigh"),
    ],
)
def test_promtool_unit_tests_fail_on_a_broken_rule(
    tmp_path: Path, options: dict[str, Any], failing: str
) -> None:
    """The unit tests are sensitive: rules rendered with other fallback thresholds, the old 10m bridge
    `for:` (finding 9), a bridge alert not held over the accounts' resync, or no hold over the burn-rate
    gaps must fail them."""
    promtool = require_tool("promtool")
    render.render_files(tmp_path, options.pop("thresholds", Thresholds()), **options)
    shutil.copy(TESTS, tmp_path / TESTS.name)
    result = _run(promtool, "test", "rules", TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert f"alertname: {failing}" in result.stdout + result.stderr


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
    windows = {a["exp_labels"].get("window") for a in firing["MT5SyncSuccessRateLow"]}
    assert windows == {w[0] for w in WORKBOOK}, "every burn-rate window pair must be seen firing"


# --- alertmanager ------------------------------------------------------------------------------


def test_amtool_check_config() -> None:
    amtool = require_tool("amtool")
    result = _run(amtool, "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_config_has_no_inline_secrets() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["alertname", "account", "source"]
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            auth = hook["http_config"]["authorization"]
            assert "credentials" not in auth
            assert auth["credentials_file"].startswith("/etc/alertmanager/secrets/")
            # the compose stack's own receiver (tests/test_compose.py checks it is a service of the stack)
            assert hook["url"] == f"http://webhook-receiver:9095/{receiver['name']}"
    assert "Alertmanager 0.25 (the version this is checked with" not in ALERTMANAGER.read_text(
        encoding="utf-8"
    )


@pytest.mark.parametrize(("alert", "severity"), [(a, s) for a in sorted(REQUIRED) for s in REQUIRED[a]])
def test_amtool_routes_alert_by_severity(alert: str, severity: str) -> None:
    amtool = require_tool("amtool")
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
    """Real Alertmanager on loopback: BridgeDown mutes per-account alerts of the same agent and source only
    (another source's accounts of the same agent keep alerting) and the agent's burn-rate alerts; a
    burn-rate page mutes the same agent's burn-rate ticket."""
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
        vps_a, vps_b = {**agent, "source": "vps-a"}, {**agent, "source": "vps-b"}
        alerts = [
            {"alertname": "MT5BridgeDown", "severity": "critical", "source": "vps-a", **agent},
            {"alertname": "MT5AccountDataCritical", "severity": "critical", "account": "1002", **vps_a},
            {"alertname": "MT5AccountSyncFailing", "severity": "warning", "account": "1002", **vps_a},
            # the same agent's other source is up: its account's alert is not muted
            {"alertname": "MT5AccountDataCritical", "severity": "critical", "account": "1005", **vps_b},
            {"alertname": "MT5SyncSuccessRateLow", "severity": "critical", "window": "1h", **agent},
            {"alertname": "MT5AccountDataCritical", "severity": "critical", "account": "2001", **other},
            {"alertname": "MT5AccountDataDegraded", "severity": "warning", "account": "2001", **other},
            {"alertname": "MT5SyncSuccessRateLow", "severity": "critical", "window": "6h", **other},
            {"alertname": "MT5SyncSuccessRateLow", "severity": "warning", "window": "1d", **other},
            # risk: never muted by the bridge; the page mutes the ticket of its own account only
            {"alertname": "MT5AccountMarginLevelLow", "severity": "critical", "account": "1003", **agent},
            {"alertname": "MT5AccountMarginLevelLow", "severity": "warning", "account": "1003", **agent},
            {"alertname": "MT5AccountMarginLevelLow", "severity": "warning", "account": "1004", **agent},
            {"alertname": "MT5AccountDrawdownHigh", "severity": "warning", "account": "1003", **agent},
        ]
        _http(f"{base}/api/v2/alerts", [{"labels": labels} for labels in alerts])

        def key(labels: dict[str, str]) -> tuple[str, str | None, str] | tuple[str, str | None, str, str]:
            k = labels["alertname"], labels.get("account") or labels.get("window"), labels["instance"]
            return (*k, labels["severity"]) if labels["alertname"] == "MT5AccountMarginLevelLow" else k

        want = {
            ("MT5AccountDataCritical", "1002", "agent:8080"),
            ("MT5AccountSyncFailing", "1002", "agent:8080"),
            ("MT5SyncSuccessRateLow", "1h", "agent:8080"),  # the bridge is the cause: page it once
            ("MT5AccountDataDegraded", "2001", "agent-b:8080"),  # by MT5AccountDataCritical, same account
            ("MT5SyncSuccessRateLow", "1d", "agent-b:8080"),  # the ticket, by that agent's burn-rate page
            ("MT5AccountMarginLevelLow", "1003", "agent:8080", "warning"),  # by the page of that account
        }
        # Until every alert is in and the inhibitions are as wanted: Alertmanager's inhibitor learns the
        # source alerts from its own subscription, a moment after the API has them (none inhibited yet).
        deadline = time.monotonic() + 15
        while True:
            got = _http(f"{base}/api/v2/alerts")
            state = {key(a["labels"]): a["status"] for a in got}
            inhibited = {k for k, status in state.items() if status["inhibitedBy"]}
            if (len(state) == len(alerts) and inhibited == want) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(state) == len(alerts), sorted(state)
        assert inhibited == want
        assert state[("MT5BridgeDown", None, "agent:8080")]["state"] == "active"
        assert state[("MT5AccountDataCritical", "2001", "agent-b:8080")]["state"] == "active"
        assert state[("MT5SyncSuccessRateLow", "6h", "agent-b:8080")]["state"] == "active"
        assert state[("MT5AccountMarginLevelLow", "1004", "agent:8080", "warning")]["state"] == "active"
        assert state[("MT5AccountDrawdownHigh", "1003", "agent:8080")]["state"] == "active"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- risk ----------------------------------------------------------------------------------------


def test_risk_thresholds_are_render_options() -> None:
    """The margin and drawdown limits of the rules and their texts come from `RiskLevels` where the
    terminal does not report the broker's levels (issue 14: where it does, the broker's series are
    compared, with the same headroom): nothing else in the rules names them."""
    levels = render.RiskLevels(margin_call=0.5, stop_out=0.3, stop_out_headroom=0.1)
    doc = render.rules(Thresholds(), risk=levels)
    margin = [r for r in _alert_rules(doc) if r["alert"] == "MT5AccountMarginLevelLow"]
    by_severity = {r["labels"]["severity"]: r for r in margin}
    assert "mt5_account_margin_level_ratio{" in by_severity["warning"]["expr"]
    assert (
        "} < 0.5 unless on(job, instance, account) mt5_account_margin_call_level_ratio{"
        in (by_severity["warning"]["expr"])
    )
    assert (
        "} < 0.33 unless on(job, instance, account) mt5_account_margin_stop_out_level_ratio{"
        in (by_severity["critical"]["expr"])
    )
    assert "(mt5_account_margin_stop_out_level_ratio{" in by_severity["critical"]["expr"]
    assert "} * 1.1)\n" in by_severity["critical"]["expr"]
    description = by_severity["critical"]["annotations"]["description"]
    assert "{{ else }}50%{{ end }} and closes positions at " in description
    assert description.endswith("{{ else }}30%{{ end }}. Largest open loss: mt5_account_largest_open_loss.")
    summary = by_severity["critical"]["annotations"]["summary"]
    assert "{{ else }}33%{{ end }}, near the stop-out level (" in summary


@pytest.mark.parametrize(
    "bad",
    [
        {"stop_out": 1.2},
        {"stop_out": 0},
        {"stop_out": 0.9, "stop_out_headroom": 0.2},
        {"drawdown_day": 1.5},
        {"drawdown_tracking": 0},
        {"margin_for": "soon"},
    ],
)
def test_bad_risk_levels_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RiskLevels"):
        render.RiskLevels(**bad)
