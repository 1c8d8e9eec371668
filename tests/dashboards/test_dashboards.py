"""Generated Grafana dashboards: committed = rendered, schema-valid, valid PromQL, thresholds from code."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.domain.freshness import STATES, Thresholds
from agent.telemetry import alerting, catalog
from agent.telemetry.alerting import RUNBOOK_URL
from bridge.metrics import BridgeMetrics
from dashboards import render
from tests.tools import require, require_tool

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "dashboards"
SCHEMA = REPO.parent / "shared" / "schemas" / "grafana-dashboard.schema.json"
PROVISIONING = DASHBOARDS_DIR / "provisioning"
RULES = REPO / "alerts" / "rules.yml"
FRESHNESS_COLOURS = ["green", "yellow", "orange", "red"]


AGENT_FILES = ("mt5-accounts-overview.json", "mt5-sync-health.json", "mt5-account.json")
BRIDGE_FILE = "mt5-bridge.json"


def _committed() -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8"))
        for name in render.FILES.values()
    }


def _agent(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The agent's dashboards (the bridge's selects another job, with variables of its own)."""
    return {name: doc for name, doc in docs.items() if name in AGENT_FILES}


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p["type"] != "row"]


def _thresholds(node: Any) -> Iterator[dict[str, Any]]:
    """Every thresholds config (field defaults and override properties) anywhere in a dashboard."""
    if isinstance(node, dict):
        if node.get("id") == "thresholds" and isinstance(node.get("value"), dict):
            yield node["value"]
        for key, value in node.items():
            if key == "thresholds" and isinstance(value, dict) and "steps" in value:
                yield value
            else:
                yield from _thresholds(value)
    elif isinstance(node, list):
        for item in node:
            yield from _thresholds(item)


def _freshness_step_values(doc: dict[str, Any]) -> list[list[float]]:
    found = []
    for config in _thresholds(doc):
        steps = config["steps"]
        if [s["color"] for s in steps] == FRESHNESS_COLOURS:
            assert steps[0]["value"] is None
            found.append([s["value"] for s in steps[1:]])
    return found


def test_committed_dashboards_equal_render(tmp_path: Path) -> None:
    paths = render.render_files(tmp_path, Thresholds())
    assert sorted(p.name for p in paths) == sorted([*AGENT_FILES, BRIDGE_FILE])
    for path in paths:
        committed = DASHBOARDS_DIR / path.name
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"dashboards/{path.name} is stale: regenerate with `mt5-agent render dashboards`"
        )


def test_dashboards_validate_against_schema() -> None:
    require(SCHEMA.is_file(), f"dashboard JSON schema not found at {SCHEMA} (../shared/schemas)")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    for name, doc in _committed().items():
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{name}: " + "; ".join(
            f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5]
        )


def test_schema_validation_would_catch_an_invalid_dashboard() -> None:
    require(SCHEMA.is_file(), f"dashboard JSON schema not found at {SCHEMA} (../shared/schemas)")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    doc = _committed()["mt5-accounts-overview.json"]
    doc["panels"][0]["fieldConfig"]["overrides"][0]["matcher"]["options"] = "fresh"  # byName-style options
    assert list(validator.iter_errors(doc))


def test_stable_uids_titles_and_layout() -> None:
    docs = _committed()
    assert docs["mt5-accounts-overview.json"]["uid"] == "mt5-accounts-overview"
    assert docs["mt5-sync-health.json"]["uid"] == "mt5-sync-health"
    assert docs["mt5-account.json"]["uid"] == "mt5-account"
    for name, doc in docs.items():
        assert doc["title"].startswith("MT5 "), name
        panels = doc["panels"]  # rows included: one id sequence in layout order
        assert [p["id"] for p in panels] == list(range(1, len(panels) + 1)), name
        cells: set[tuple[int, int]] = set()
        for p in panels:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name}: {p['title']} overflows the grid"
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {p['title']} overlaps another panel"
            cells |= mine


def test_every_panel_queries_prometheus_through_the_variable() -> None:
    for name, doc in _committed().items():
        for panel in _panels(doc):
            exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
            assert exprs and all(exprs), f"{name}: panel {panel['title']!r} has a target without expr"
            for target in panel["targets"]:
                assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["datasource"]["uid"] == "${datasource}"


def test_template_variables() -> None:
    for name, doc in _agent(_committed()).items():
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert list(variables) == ["datasource", "job", "instance", "account", "currency"], name
        assert variables["job"]["query"] == 'label_values(up{job="mt5-agent"}, job)'
        assert variables["instance"]["query"] == 'label_values(up{job="mt5-agent", job=~"$job"}, instance)'
        account = variables["account"]
        assert account["type"] == "query", name
        assert account["query"] == (
            'label_values(mt5_account_info{job="mt5-agent", job=~"$job", instance=~"$instance"}, account)'
        )
        assert account["datasource"]["uid"] == "${datasource}"
        assert "currency)" in variables["currency"]["query"]
        for v in ("job", "instance"):
            assert variables[v]["multi"] is True and variables[v]["allValue"] == ".*", (name, v)
        one = name == "mt5-account.json"
        assert account.get("multi", False) is not one and account.get("includeAll", False) is not one
        assert (variables["currency"].get("hide") == 2) is one, name  # per account: its currency, hidden


def test_required_panels_present() -> None:
    docs = _committed()
    overview = "\n".join(t["expr"] for p in _panels(docs["mt5-accounts-overview.json"]) for t in p["targets"])
    for metric in (
        "mt5_account_freshness_state",
        "mt5_account_balance",
        "mt5_account_equity",
        "mt5_account_profit",
        "mt5_account_margin_level_ratio",
        "mt5_account_data_age_seconds",
        "mt5_freshness_threshold_seconds",
        "mt5_account_data_source",
        "mt5_account_info",
    ):
        assert metric in overview, metric
    types = {p["type"] for p in _panels(docs["mt5-accounts-overview.json"])}
    assert {"stat", "table", "timeseries", "state-timeline"} <= types
    sync = "\n".join(t["expr"] for p in _panels(docs["mt5-sync-health.json"]) for t in p["targets"])
    for needle in (
        'histogram_quantile(0.99, sum by (le) (rate(mt5_sync_duration_seconds_bucket{job="mt5-agent", '
        'job=~"$job", instance=~"$instance"}'
        "[$__rate_interval])))",
        "sum by (result) (increase(mt5_sync_runs_total",
        "sum by (account, reason) (increase(mt5_account_sync_failures_total",
        "mt5_bridge_up",
        "mt5_store_up",
        "histogram_quantile(0.5, sum by (le, endpoint, source) "
        "(rate(mt5_bridge_request_duration_seconds_bucket{",
        "histogram_quantile(0.99, sum by (le, endpoint, source) "
        "(rate(mt5_bridge_request_duration_seconds_bucket{",
    ):
        assert needle in sync, needle


def test_freshness_thresholds_follow_thresholds() -> None:
    committed = {name: _freshness_step_values(doc) for name, doc in _committed().items()}
    assert committed["mt5-accounts-overview.json"] == [[300, 600, 900], [5, 10, 15], [300, 600, 900]]
    assert committed["mt5-sync-health.json"] == [[300, 600, 900]]
    assert committed["mt5-account.json"] == [[300, 600, 900], [300, 600, 900]]
    short = render.render(Thresholds(30, 60, 90))
    assert _freshness_step_values(short["mt5-accounts-overview.json"]) == [
        [30, 60, 90],
        [0.5, 1, 1.5],
        [30, 60, 90],
    ]
    assert _freshness_step_values(short["mt5-sync-health.json"]) == [[30, 60, 90]]
    assert "(30,60,90)" in short["mt5-accounts-overview.json"]["description"]


def test_state_colours_cover_every_freshness_state() -> None:
    panels = _panels(_committed()["mt5-accounts-overview.json"])
    table = next(p for p in panels if p["type"] == "table")
    mapped = {k for m in table["fieldConfig"]["defaults"]["mappings"] for k in m["options"]}
    assert {str(s) for s in STATES} <= mapped
    assert {"VPS_LIVE_MT5", "VPS_STORED"} <= mapped
    for doc in _agent(_committed()).values():
        for timeline in (p for p in _panels(doc) if p["type"] == "state-timeline"):
            [mapping] = timeline["fieldConfig"]["defaults"]["mappings"]
            assert {k: (v["text"], v["color"]) for k, v in mapping["options"].items()} == {
                str(i): (str(s), c) for i, (s, c) in enumerate(zip(STATES, FRESHNESS_COLOURS, strict=True))
            }
            assert "mt5_account_freshness_state" in timeline["targets"][0]["expr"]


def test_panel_queries_are_substituted() -> None:
    queries = render.panel_queries()
    assert len(queries) >= 20
    assert not any("$" in q for q in queries)
    assert 'mt5_account_balance{job="mt5-agent", job=~".*", instance=~".*", account=~".*"}' in "\n".join(
        queries
    )
    assert any("[1m]" in q for q in queries)
    annotations = render.annotation_queries()
    assert annotations[0] == (
        'ALERTS{job="mt5-agent", job=~".*", instance=~".*", alertname=~"MT5.*", alertstate="firing"}'
    )
    assert annotations[1].startswith('sum by (result) (increase(mt5_sync_runs_total{job="mt5-agent", ')
    assert not set(annotations) & set(queries)
    with pytest.raises(ValueError, match="unsubstituted"):
        render.substitute("up{instance=~'$nosuch'}")


def test_panel_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    queries = render.panel_queries() + render.bridge_panel_queries() + render.annotation_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [{"record": f"dashboard:query:{i}", "expr": q} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_provisioning_points_at_compose_prometheus_and_dashboards() -> None:
    datasources = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    [ds] = datasources["datasources"]
    assert (ds["type"], ds["url"], ds["isDefault"]) == ("prometheus", "http://prometheus:9090", True)
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "mt5.yml").read_text(encoding="utf-8"))
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards/mt5"


def _selectors(expr: str) -> list[tuple[str, str]]:
    return re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr)


def test_job_selector_is_a_render_option_in_every_query() -> None:
    """Finding 11: the job selector (default job="mt5-agent") reaches every query and the variable."""
    job = 'job=~"mt5-agent-.+", env="prod"'
    docs = _agent(render.render(Thresholds(), job_selector=job))
    queries = [t["expr"] for doc in docs.values() for p in _panels(doc) for t in p["targets"]]
    queries += [
        v["query"] for doc in docs.values() for v in doc["templating"]["list"] if v["type"] == "query"
    ]
    queries += [a["expr"] for doc in docs.values() for a in doc["annotations"]["list"] if a.get("expr")]
    selectors = [sel for q in queries for sel in _selectors(q)]
    assert len(selectors) >= len(queries)
    for metric, matchers in selectors:
        assert job in matchers, (metric, matchers)
    bare = [m for q in queries for m in re.findall(r"\b(?:mt5_\w+|up)\b(?![{\w])", q)]
    assert not bare, bare
    assert render.render(Thresholds()) == render.render(
        Thresholds(), job_selector='job="mt5-agent"', runbook_url=RUNBOOK_URL
    )
    with pytest.raises(ValueError, match="job selector"):
        render.render(Thresholds(), job_selector="mt5-agent")


def test_runbook_links_follow_the_pattern() -> None:
    """Finding 11: panels about an alert link to its runbook entry, built from the same URL pattern."""

    def links(docs: dict[str, dict[str, Any]]) -> dict[str, str]:
        return {
            link["title"]: link["url"]
            for doc in docs.values()
            for p in _panels(doc)
            for link in p.get("links", [])
        }

    default = links(_committed())
    assert default == {
        f"Runbook: {name}": f"https://github.com/mt5-monitor/mt5-monitor/blob/main/alerts/RUNBOOK.md#{name.lower()}"
        for name in render.ALERT_SIGNALS
    }
    custom = links(render.render(Thresholds(), runbook_url="https://wiki.example/{alertname}"))
    assert custom["Runbook: MT5BridgeDown"] == "https://wiki.example/MT5BridgeDown"
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    assert {title.removeprefix("Runbook: ") for title in default} <= alerts


def _rules() -> dict[str, str]:
    """Alert name -> its expressions (joined, with the recording rules they use), from the committed rules."""
    rules = [r for g in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]
    recorded = {r["record"]: r["expr"] for r in rules if "record" in r}
    exprs: dict[str, str] = {}
    for rule in (r for r in rules if "alert" in r):
        used = [e for name, e in recorded.items() if name in rule["expr"]]
        exprs[rule["alert"]] = "\n".join([exprs.get(rule["alert"], ""), rule["expr"], *used])
    return exprs


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets", [])]


def _selects(expr: str, metric: str) -> bool:
    return re.search(rf"(?<![\w:]){re.escape(metric)}\{{", expr) is not None


def test_every_panel_about_an_alert_links_to_its_runbook() -> None:
    rules = _rules()
    for alert, families in render.ALERT_SIGNALS.items():
        assert alert in rules, alert
        assert all(_selects(rules[alert], f) for f in families), (alert, families)  # signals match the rule
    linked = 0
    for name, doc in _agent(_committed()).items():
        for panel in _panels(doc):
            titles = {link["title"] for link in panel.get("links", [])}
            expected = {
                f"Runbook: {alert}"
                for alert, families in render.ALERT_SIGNALS.items()
                if any(_selects(e, f) for f in families for e in _exprs(panel))
            }
            assert titles == expected, (name, panel["title"], titles, expected)
            linked += bool(expected)
    assert linked >= 10


def test_money_panels_filter_by_currency() -> None:
    money = ("mt5_account_balance", "mt5_account_equity", "mt5_account_profit", "mt5_account_margin")
    seen = 0
    for name, doc in _committed().items():
        for panel in _panels(doc):
            if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit":
                continue  # a ratio of two amounts of one account (the drawdown) has no currency
            for expr in _exprs(panel):
                if any(_selects(expr, m) for m in money) or re.search(r"mt5_account_margin_free\{", expr):
                    seen += 1
                    assert "group_left(currency)" in expr, (name, panel["title"])
                    assert re.search(r'mt5_account_info\{[^}]*currency=~"\$currency"', expr), expr
            if panel["type"] == "timeseries" and any(_selects(e, m) for m in money for e in _exprs(panel)):
                assert "${currency}" in panel["title"], panel["title"]  # the unit cannot be templated
    assert seen >= 9
    overview = {p["title"]: p for p in _panels(_committed()["mt5-accounts-overview.json"])}
    assert overview["Balance (${currency})"]["repeat"] == "currency"  # one panel (one axis) per currency


def test_accounts_table_links_to_the_account_dashboard() -> None:
    docs = _committed()
    table = next(p for p in _panels(docs["mt5-accounts-overview.json"]) if p["type"] == "table")
    [link] = table["fieldConfig"]["defaults"]["links"]
    uid = docs["mt5-account.json"]["uid"]
    assert link["url"].startswith(f"/d/{uid}/")
    assert "var-account=${__data.fields.Account}" in link["url"]
    assert "${__url_time_range}" in link["url"] and "${job:queryparam}" in link["url"]
    assert "Account" in table["transformations"][1]["options"]["renameByName"].values()


def test_job_and_instance_variables_in_every_query() -> None:
    for name, doc in _agent(_committed()).items():
        queries = [e for p in _panels(doc) for e in _exprs(p)]
        queries += [a["expr"] for a in doc["annotations"]["list"] if a.get("expr")]
        for expr in queries:
            for metric, matchers in _selectors(expr):
                assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (name, metric)


def test_annotations_from_alerts_and_failed_syncs() -> None:
    for name, doc in _agent(_committed()).items():
        annotations = {a["name"]: a for a in doc["annotations"]["list"]}
        alerts, failed = annotations["MT5 alerts"], annotations["Failed syncs"]
        assert alerts["expr"].startswith("ALERTS{") and 'alertname=~"MT5.*"' in alerts["expr"], name
        assert (
            'result=~"failed|skipped"' in failed["expr"] and "increase(mt5_sync_runs_total{" in failed["expr"]
        )
        assert all(a["enable"] for a in annotations.values())
        assert alerts["datasource"]["uid"] == failed["datasource"]["uid"] == "${datasource}"


def test_no_two_panels_have_the_same_queries() -> None:
    for name, doc in _committed().items():
        seen: dict[frozenset[str], str] = {}
        for panel in _panels(doc):
            key = frozenset(_exprs(panel))
            assert key not in seen, f"{name}: {panel['title']!r} repeats {seen[key]!r}"
            seen[key] = panel["title"]
    assert "piechart" not in {p["type"] for d in _committed().values() for p in _panels(d)}


def test_provisioning_loads_every_dashboard_file() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "mt5.yml").read_text(encoding="utf-8"))
    text = (PROVISIONING / "dashboards" / "mt5.yml").read_text(encoding="utf-8")
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards/mt5"
    for file in render.FILES.values():
        assert file in text, f"provisioning does not mention {file}"


def _row_panels(doc: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels under the expanded row `title` (up to the next row)."""
    panels = doc["panels"]
    [start] = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == title]
    assert panels[start]["collapsed"] is False
    below = []
    for panel in panels[start + 1 :]:
        if panel["type"] == "row":
            break
        assert panel["gridPos"]["y"] > panels[start]["gridPos"]["y"], panel["title"]
        below.append(panel)
    return below


def _by_title(panels: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in panels}


SEL = 'job="mt5-agent", job=~"$job", instance=~"$instance"'
POLL_AGE = f'time() - mt5_account_positions_last_poll_timestamp_seconds{{{SEL}, account=~"$account"}}'


def test_overview_positions_and_trade_events_row() -> None:
    """Issue 12: open positions (fleet and per account), events per minute by type, detection delay
    percentiles, poll age per account, poll failures by reason and poll duration, on the overview."""
    panels = _by_title(_row_panels(_committed()["mt5-accounts-overview.json"], "Positions and trade events"))
    exprs = {title: _exprs(p) for title, p in panels.items()}
    acc = f'{SEL}, account=~"$account"'
    assert exprs["Open positions"] == [f"sum(max by (account) (mt5_account_open_positions{{{acc}}}))"]
    assert exprs["Open positions by account"] == [f"max by (account) (mt5_account_open_positions{{{acc}}})"]
    assert panels["Open positions by account"]["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == (
        "normal"
    )  # stacked: the top line is the fleet total
    assert exprs["Trade events by type (per minute)"] == [
        f"60 * sum by (type) (rate(mt5_trade_events_total{{{SEL}}}[$__rate_interval]))"
    ]
    assert exprs["Trade events (1h)"] == [f"sum by (type) (increase(mt5_trade_events_total{{{SEL}}}[1h]))"]
    assert exprs["Trade event detection delay"] == [
        f"histogram_quantile({q}, sum by (le) (rate(mt5_trade_event_detection_delay_seconds_bucket{{{SEL}}}"
        "[$__rate_interval])))"
        for q in ("0.5", "0.95", "0.99")
    ]
    assert [t["legendFormat"] for t in panels["Trade event detection delay"]["targets"]] == [
        "p50",
        "p95",
        "p99",
    ]
    assert exprs["Positions poll age by account"] == [f"max by (account) ({POLL_AGE})"]
    assert exprs["Oldest positions poll"] == [f"max({POLL_AGE})"]
    assert exprs["Positions poll failures by reason (per minute)"] == [
        f"60 * sum by (reason) (rate(mt5_positions_poll_failures_total{{{SEL}}}[$__rate_interval])) > 0"
    ]
    assert exprs["Positions poll round duration"] == [
        f"histogram_quantile({q}, sum by (le) (rate(mt5_positions_poll_duration_seconds_bucket{{{SEL}}}"
        "[$__rate_interval])))"
        for q in ("0.5", "0.99")
    ]
    assert exprs["Trade events detected"] == [f"min(mt5_trade_events_available{{{SEL}}})"]
    for title in (
        "Trade event detection delay",
        "Positions poll age by account",
        "Positions poll round duration",
    ):
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "s", title
    colours = {
        o["matcher"]["options"]["names"][0]: o["properties"][0]["value"]["fixedColor"]
        for o in panels["Trade events by type (per minute)"]["fieldConfig"]["overrides"]
    }
    assert set(colours) == {"TRADE_OPENED", "TRADE_UPDATED", "TRADE_CLOSED"}


def test_account_positions_row_is_that_accounts() -> None:
    panels = _by_title(_row_panels(_committed()["mt5-account.json"], "Positions and trade events"))
    assert set(panels) == {
        "Open positions",
        "Open positions over time",
        "Positions poll age",
        "Positions poll age over time",
    }
    for panel in panels.values():
        for expr in _exprs(panel):
            for metric, matchers in _selectors(expr):
                assert 'account=~"$account"' in matchers, (panel["title"], metric)
    assert _exprs(panels["Positions poll age"]) == [f"max({POLL_AGE})"]


def test_positions_poll_age_thresholds_and_runbook_follow_the_alert() -> None:
    """The poll-age panels turn red (dashed line) where MT5AccountPositionsStale fires, and link to its
    runbook entry; the rule compares the same series."""
    limit = alerting.POSITIONS_STALE_SECONDS
    assert f"> {limit}" in _rules()["MT5AccountPositionsStale"]
    seen = 0
    for name in ("mt5-accounts-overview.json", "mt5-account.json"):
        doc = _committed()[name]
        for panel in _row_panels(doc, "Positions and trade events"):
            if not any("mt5_account_positions_last_poll_timestamp_seconds{" in e for e in _exprs(panel)):
                continue
            seen += 1
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert [(s["value"], s["color"]) for s in steps] == [(None, "green"), (limit, "red")], panel[
                "title"
            ]
            if panel["type"] == "timeseries":
                assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
            assert "Runbook: MT5AccountPositionsStale" in {link["title"] for link in panel["links"]}
            assert f"{limit} s" in panel["description"], panel["title"]
    assert seen == 4


def _catalog_series() -> set[str]:
    names = {catalog.SCRAPE_UP, render.ALERTS_SERIES}
    for family in catalog.FAMILIES:
        names.add(family.series)
        if family.kind is catalog.Kind.HISTOGRAM:
            names |= {family.bucket, f"{family.name}_count", f"{family.name}_sum"}
    return names


def _metric_names(expr: str) -> set[str]:
    return {metric for metric, _ in _selectors(expr)}


def test_agent_dashboards_query_only_catalog_series() -> None:
    """Every series an agent dashboard selects is one the agent exports (agent.telemetry.catalog), or
    Prometheus' own `up` / `ALERTS`."""
    known = _catalog_series()
    for name in AGENT_FILES:
        doc = _committed()[name]
        exprs = [e for p in _panels(doc) for e in _exprs(p)]
        exprs += [a["expr"] for a in doc["annotations"]["list"] if a.get("expr")]
        exprs += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
        unknown = {metric for e in exprs for metric in _metric_names(e)} - known
        assert not unknown, (name, unknown)


BRIDGE_SEL = 'job="mt5-bridge", job=~"$bridge_job", instance=~"$bridge_instance"'


def _bridge_exposition() -> dict[str, set[str]]:
    """Sample name -> label names, from a real BridgeMetrics registry (one terminal watched, one call of
    each kind observed so every family has samples)."""
    metrics = BridgeMetrics(runtime=False)
    metrics.watch(lambda: [("sim-1", True)])
    metrics.observe_call("login", 0.01)
    metrics.lock_wait.observe(0.001)
    metrics.failure("login", "timeout")
    metrics.observe_http("/api/mt5/account/{id}/info", 500, 0.02)
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_bridge_dashboard_panels() -> None:
    """Issue 18: terminal up per terminal over time, MT5 call p95 by function, lock wait p95, failures by
    function and reason, HTTP p95 by route, 5xx ratio."""
    doc = _committed()[BRIDGE_FILE]
    assert doc["uid"] == "mt5-bridge" and doc["title"] == "MT5 bridge"
    panels = _by_title(_panels(doc))
    exprs = {title: _exprs(p) for title, p in panels.items()}
    assert panels["Terminal up"]["type"] == "state-timeline"
    assert exprs["Terminal up"] == [f"max by (terminal) (mt5_bridge_terminal_up{{{BRIDGE_SEL}}})"]
    [mapping] = panels["Terminal up"]["fieldConfig"]["defaults"]["mappings"]
    assert {k: v["text"] for k, v in mapping["options"].items()} == {"0": "DOWN", "1": "UP"}

    def p95(family: str, by: str) -> str:
        return (
            f"histogram_quantile(0.95, sum by ({by}) (rate({family}_bucket{{{BRIDGE_SEL}}}"
            "[$__rate_interval])))"
        )

    assert exprs["MT5 call duration p95 by function"] == [
        p95("mt5_bridge_terminal_call_duration_seconds", "le, function")
    ]
    assert p95("mt5_bridge_terminal_lock_wait_seconds", "le") in exprs["Terminal lock wait"]
    assert exprs["HTTP request duration p95 by route"] == [
        p95("mt5_bridge_http_request_duration_seconds", "le, route")
    ]
    assert exprs["MT5 call failures by function and reason (per minute)"] == [
        "60 * sum by (function, reason) "
        f"(rate(mt5_bridge_terminal_call_failures_total{{{BRIDGE_SEL}}}[$__rate_interval])) > 0"
    ]
    count = "mt5_bridge_http_request_duration_seconds_count"
    assert exprs["HTTP 5xx ratio"] == [
        f'(sum(rate({count}{{{BRIDGE_SEL}, code_class="5xx"}}[$__rate_interval])) or vector(0))\n/\n'
        f"sum(rate({count}{{{BRIDGE_SEL}}}[$__rate_interval]))"
    ]
    assert panels["HTTP 5xx ratio"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    for title in (
        "MT5 call duration p95 by function",
        "Terminal lock wait",
        "HTTP request duration p95 by route",
    ):
        assert panels[title]["fieldConfig"]["defaults"]["unit"] == "s", title
    variables = [v["name"] for v in doc["templating"]["list"]]
    assert variables == ["datasource", "bridge_job", "bridge_instance"]
    [runbook] = [link for link in doc["links"] if link["title"].startswith("Runbook:")]
    assert runbook["url"].endswith("RUNBOOK.md#mt5bridgedown")
    annotations = {a["name"]: a for a in doc["annotations"]["list"]}
    assert annotations["MT5 alerts"]["expr"] == (
        'ALERTS{job="mt5-agent", alertname=~"MT5Bridge.*", alertstate="firing"}'
    )


def test_bridge_dashboard_selects_only_what_the_bridge_exports() -> None:
    """Every series and grouping label of the bridge dashboard exists in a real bridge's exposition."""
    exported = _bridge_exposition()
    doc = _committed()[BRIDGE_FILE]
    exprs = [e for p in _panels(doc) for e in _exprs(p)]
    seen = set()
    for expr in exprs:
        for metric in _metric_names(expr) - {"up"}:
            assert metric in exported, (metric, sorted(exported))
            seen.add(metric)
            for group in re.findall(r"by \(([^)]*)\)", expr):
                labels = {label.strip() for label in group.split(",")} - {"le"}
                assert labels <= exported[metric] | {"le"}, (expr, labels, exported[metric])
    assert {
        "mt5_bridge_terminal_up",
        "mt5_bridge_terminal_call_duration_seconds_bucket",
        "mt5_bridge_terminal_lock_wait_seconds_bucket",
        "mt5_bridge_terminal_call_failures_total",
        "mt5_bridge_http_request_duration_seconds_bucket",
        "mt5_bridge_http_request_duration_seconds_count",
        "mt5_bridge_build_info",
    } <= seen


def test_bridge_job_selector_is_a_render_option() -> None:
    job = 'job=~"mt5-bridge-.+", env="prod"'
    doc = render.render(Thresholds(), bridge_job_selector=job)[BRIDGE_FILE]
    queries = [e for p in _panels(doc) for e in _exprs(p)]
    queries += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    selectors = [sel for q in queries for sel in _selectors(q)]
    assert len(selectors) >= len(queries)
    for metric, matchers in selectors:
        assert job in matchers, (metric, matchers)
    for expr in [e for p in _panels(doc) for e in _exprs(p)]:
        for metric, matchers in _selectors(expr):
            assert 'job=~"$bridge_job"' in matchers and 'instance=~"$bridge_instance"' in matchers, metric
    assert (
        render.render(Thresholds())[BRIDGE_FILE]
        == render.render(Thresholds(), bridge_job_selector='job="mt5-bridge"')[BRIDGE_FILE]
    )
    # The agent's dashboards do not depend on it, nor the bridge's on the agent's but for its alerts.
    assert _agent(render.render(Thresholds(), bridge_job_selector=job)) == _agent(_committed())
    with pytest.raises(ValueError, match="job selector"):
        render.render(Thresholds(), bridge_job_selector="mt5-bridge")


def test_compose_prometheus_scrapes_the_bridge_job_the_dashboard_selects() -> None:
    """The bridge dashboard has data in compose: Prometheus scrapes job mt5-bridge at the bridge's port with
    the bridge's own token (the secret the bridge is given), and Grafana mounts the file."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))["services"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "mt5-bridge"]
    assert render.bridge.BRIDGE_JOB_SELECTOR == 'job="mt5-bridge"'
    targets = []
    for name in ("bridge", "bridge-b"):  # compose runs two bridges (the agent's two sources)
        command = compose[name]["command"]
        targets.append(f"{name}:{command[command.index('--port') + 1]}")
    assert job["static_configs"][0]["targets"] == targets
    assert job.get("metrics_path", "/metrics") == "/metrics"

    def secrets(service: dict[str, Any]) -> dict[str, str]:
        out = {}
        for entry in service.get("secrets", []):
            name, target = (
                (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
            )
            target = target or name
            out[target if target.startswith("/") else f"/run/secrets/{target}"] = name
        return out

    bridge_token = secrets(compose["bridge"])[compose["bridge"]["environment"]["MT5_BRIDGE_TOKEN_FILE"]]
    assert secrets(compose["prometheus"])[job["authorization"]["credentials_file"]] == bridge_token
    mounts = [v.split(":")[:2] for v in compose["grafana"]["volumes"] if v.startswith("./dashboards/")]
    assert ["./dashboards/mt5-bridge.json", "/etc/grafana/dashboards/mt5/mt5-bridge.json"] in mounts


# --- risk (DESIGN.md 12) -------------------------------------------------------------------------

ACC_SEL = f'{SEL}, account=~"$account"'


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_risk_rows_show_margin_loss_exposure_and_drawdowns() -> None:
    overview = _by_title(_row_panels(_committed()["mt5-accounts-overview.json"], "Risk"))
    exprs = {title: _exprs(p) for title, p in overview.items()}
    assert exprs["Margin level by account"] == [
        f"max by (account) (mt5_account_margin_level_ratio{{{ACC_SEL}}})"
    ]
    assert exprs["Net exposure by account and symbol (lots)"] == [
        f"sum by (account, symbol) (mt5_account_net_exposure_lots{{{ACC_SEL}}})"
    ]
    assert exprs["Equity drawdown by account"] == [
        f"max by (account, period) (1 - mt5_account_equity{{{ACC_SEL}}} / on(job, instance, account) "
        f"group_right() (mt5_account_equity_peak{{{ACC_SEL}}} > 0))"
    ]
    [loss] = exprs["Largest open loss by account (${currency})"]
    assert "mt5_account_largest_open_loss{" in loss and 'currency=~"$currency"' in loss  # one currency
    account = _by_title(_row_panels(_committed()["mt5-account.json"], "Risk"))
    assert set(account) == {
        "Margin level",
        "Largest open loss (${currency})",
        "Drawdown today",
        "Drawdown since tracking started",
        "Margin level over time",
        "Net exposure by symbol (lots)",
        "Equity drawdown over time",
        "Correlated open positions",
    }
    assert _exprs(account["Correlated open positions"]) == [
        f"max by (account) (mt5_account_position_correlation_max_ratio{{{ACC_SEL}}})",
        f"max by (account) (mt5_account_correlated_exposure_lots{{{ACC_SEL}}})",
    ]
    assert _exprs(account["Margin level over time"]) == [
        f"max by (account) (mt5_account_margin_level_ratio{{{ACC_SEL}}})",
        f"max by (account) (mt5_account_margin_call_level_ratio{{{ACC_SEL}}})",
        f"max by (account) (mt5_account_margin_stop_out_level_ratio{{{ACC_SEL}}})",
    ]
    assert _exprs(account["Drawdown today"]) == [
        f"max(1 - mt5_account_equity{{{ACC_SEL}}} / on(job, instance, account) "
        f'group_right() (mt5_account_equity_peak{{{ACC_SEL}, period="day"}} > 0))'
    ]
    for panel in account.values():
        for expr in _exprs(panel):
            for metric, matchers in _selectors(expr):
                assert 'account=~"$account"' in matchers, (panel["title"], metric)
    # the largest open loss over time sits beside the floating profit, in the account's currency
    detail = _by_title(_panels(_committed()["mt5-account.json"]))
    assert "mt5_account_largest_open_loss{" in _exprs(detail["Largest open loss (${currency})"])[0]


@pytest.mark.parametrize(
    "levels",
    [alerting.DEFAULT_RISK, alerting.RiskLevels(margin_call=0.5, stop_out=0.3, drawdown_day=0.03)],
    ids=["default", "broker-50-30"],
)
def test_risk_thresholds_follow_the_alert_levels(levels: alerting.RiskLevels) -> None:
    """The margin panels are red below the page level and orange below the margin call (dashed lines on the
    graphs), the drawdown panels red above the day's limit: the levels the rules are rendered with."""
    docs = render.render(Thresholds(), risk=levels)
    seen = 0
    for name in ("mt5-accounts-overview.json", "mt5-account.json"):
        for panel in _row_panels(docs[name], "Risk"):
            exprs = _exprs(panel)
            if any(_selects(e, "mt5_account_margin_level_ratio") for e in exprs):
                assert _steps(panel) == [
                    (None, "red"),
                    (levels.critical_level, "orange"),
                    (levels.margin_call, "green"),
                ]
                assert "Runbook: MT5AccountMarginLevelLow" in {link["title"] for link in panel["links"]}
                seen += 1
            elif any(_selects(e, "mt5_account_equity_peak") for e in exprs):
                limit = (
                    levels.drawdown_tracking
                    if panel["title"] == "Drawdown since tracking started"
                    else (levels.drawdown_day)
                )
                assert _steps(panel) == [(None, "green"), (limit, "red")], panel["title"]
                assert "Runbook: MT5AccountDrawdownHigh" in {link["title"] for link in panel["links"]}
                seen += 1
            if panel["type"] == "timeseries" and "thresholds" in panel["fieldConfig"]["defaults"]:
                assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert seen == 7
    if levels == alerting.DEFAULT_RISK:  # the committed rules compare the same levels
        rules = _rules()
        for limit in (levels.margin_call, levels.critical_level):
            assert (
                f"mt5_account_margin_level_ratio{{{render.JOB_SELECTOR}}} < {limit:g} unless on("
                in (rules["MT5AccountMarginLevelLow"])
            )
        assert f'period="day"}} > 0)\n  ) > {levels.drawdown_day:g}' in rules["MT5AccountDrawdownHigh"]
