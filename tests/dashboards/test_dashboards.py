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

from agent.domain.freshness import STATES, Thresholds
from agent.telemetry.alerting import RUNBOOK_URL
from dashboards import render
from tests.tools import require, require_tool

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "dashboards"
SCHEMA = REPO.parent / "shared" / "schemas" / "grafana-dashboard.schema.json"
PROVISIONING = DASHBOARDS_DIR / "provisioning"
RULES = REPO / "alerts" / "rules.yml"
FRESHNESS_COLOURS = ["green", "yellow", "orange", "red"]


def _committed() -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8"))
        for name in render.FILES.values()
    }


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
    assert sorted(p.name for p in paths) == sorted(
        ["mt5-accounts-overview.json", "mt5-sync-health.json", "mt5-account.json"]
    )
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
        panels = _panels(doc)
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
    for name, doc in _committed().items():
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
        "histogram_quantile(0.5, sum by (le, endpoint) (rate(mt5_bridge_request_duration_seconds_bucket{",
        "histogram_quantile(0.99, sum by (le, endpoint) (rate(mt5_bridge_request_duration_seconds_bucket{",
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
    for doc in _committed().values():
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
    queries = render.panel_queries() + render.annotation_queries()
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
    docs = render.render(Thresholds(), job_selector=job)
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
    for name, doc in _committed().items():
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
    for name, doc in _committed().items():
        queries = [e for p in _panels(doc) for e in _exprs(p)]
        queries += [a["expr"] for a in doc["annotations"]["list"] if a.get("expr")]
        for expr in queries:
            for metric, matchers in _selectors(expr):
                assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, (name, metric)


def test_annotations_from_alerts_and_failed_syncs() -> None:
    for name, doc in _committed().items():
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
