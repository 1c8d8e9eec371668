"""The metric catalog is the one place metric and label names are written: the registry exports exactly
its families, and the rendered rules and dashboards query nothing else."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest

from agent.domain.freshness import Thresholds
from agent.telemetry import catalog
from agent.telemetry.catalog import Kind
from agent.telemetry.registry import AgentMetrics
from alerts import render as alerts_render
from dashboards import render as dashboards_render

REPO = Path(__file__).resolve().parents[2]
RENDERERS = [REPO / "alerts" / "render.py", REPO / "dashboards" / "render.py"]
_METRIC = re.compile(r"\b(mt5_[a-z0-9_]+)")
_BY = re.compile(r"\b(?:by|without|on|group_left|group_right)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_EQUALS = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*!?=\s*\"([^\"]*)\"")
# The closed value set of each label that has one.
CLOSED = {
    catalog.STATE: set(catalog.FRESHNESS_STATES),
    catalog.SOURCE: set(catalog.DATA_SOURCES),
    catalog.RESULT: set(catalog.RESULTS),
    catalog.REASON: set(catalog.FAILURE_REASONS),
    catalog.OUTCOME: set(catalog.RUN_OUTCOMES),
    catalog.ENDPOINT: {*catalog.BRIDGE_ENDPOINTS, catalog.OTHER},
    catalog.OPERATION: {*catalog.STORE_OPERATIONS, catalog.OTHER},
    catalog.PERIOD: set(catalog.DRAWDOWN_PERIODS),
}


def _series() -> set[str]:
    """Every series name a query may select: gauges and counters by name, histograms by their parts."""
    names = {catalog.SCRAPE_UP}
    for family in catalog.FAMILIES:
        if family.kind is Kind.HISTOGRAM:
            names |= {f"{family.name}_{part}" for part in ("bucket", "sum", "count")}
        else:
            names.add(family.series)
    return names


def _labels() -> set[str]:
    return {label for f in catalog.FAMILIES for label in f.labels} | {catalog.JOB, catalog.INSTANCE, "le"}


def _exprs() -> list[str]:
    rules = alerts_render.rules(Thresholds())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return exprs + dashboards_render.panel_queries()


def test_registry_exports_exactly_the_catalog() -> None:
    metrics = AgentMetrics()
    described: dict[str, Any] = {}
    for collector in list(metrics.registry._collector_to_names):
        for fam in getattr(collector, "describe", lambda: [])() or collector.collect():
            described[fam.name] = fam
    assert metrics.collector is None  # the state and risk collectors come with attach()
    # prometheus_client's standard process/platform/GC collectors, outside our prefix and catalog.
    runtime = {name for name in described if name.startswith(("process_", "python_"))}
    assert {
        "process_cpu_seconds",
        "process_resident_memory_bytes",
        "python_info",
        "python_gc_objects_collected",
    } <= runtime
    for name in runtime:
        del described[name]
    expected = {f.name: f for f in catalog.EVENT_FAMILIES}
    assert set(described) == set(expected)
    for name, fam in described.items():
        assert fam.documentation == expected[name].help
        assert fam.type == expected[name].kind.value


def test_catalog_names_are_unique_and_prometheus_names() -> None:
    names = [f.name for f in catalog.FAMILIES]
    assert len(names) == len(set(names))
    for family in catalog.FAMILIES:
        assert re.fullmatch(r"mt5_[a-z0-9_]+", family.name), family.name
        assert not family.name.endswith("_total"), family.name
        assert family.help and family.help.strip() == family.help
        assert (family.kind is Kind.HISTOGRAM) == bool(family.buckets), family.name


@pytest.mark.parametrize("expr", _exprs())
def test_rules_and_panels_query_only_catalog_series_and_labels(expr: str) -> None:
    groups = alerts_render.rules(Thresholds())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    without_records = expr
    for name in recorded:
        without_records = without_records.replace(name, "")
    assert set(_METRIC.findall(without_records)) <= _series(), expr
    for group in _BY.findall(expr):
        assert {g.strip() for g in group.split(",") if g.strip()} <= _labels(), expr
    # label_replace's target label is new by design; every other matcher names a catalog label.
    assert set(_MATCHER.findall(expr.replace('"live_data", "never"', ""))) <= _labels(), expr
    for name, value in _EQUALS.findall(expr):
        assert value in CLOSED.get(name, {value}), (name, value, expr)


@pytest.mark.parametrize("path", RENDERERS, ids=lambda p: p.parent.name)
def test_renderers_write_no_metric_name_literal(path: Path) -> None:
    """Names come from the catalog; a literal `mt5_...` in code (docstrings and comments aside) is a name
    that a rename in the catalog would not reach."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    strings = [t.string for t in tokens if t.type == tokenize.STRING]
    literals = [s for s in strings if not s.lstrip("rfbu").startswith('"""')]
    assert [s for s in literals if _METRIC.search(s)] == []


def test_dashboards_do_not_import_alerts() -> None:
    tree = ast.parse((REPO / "dashboards" / "render.py").read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m and m.split(".")[0] == "alerts"}
