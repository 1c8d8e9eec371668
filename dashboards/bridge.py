"""The bridge's own dashboard (issue 18): what its /metrics (bridge/metrics.py) says about the terminals
behind it. Terminal up per terminal over time, MT5 call p95 by function, terminal lock wait, failed calls by
function and reason, HTTP p95 by route and the share of 5xx answers.

A dashboard of its own, not a row of the agent's: the bridge is another Prometheus job (on the terminal's
machine, scraped with the bridge token), selected by `bridge_job_selector` (default job="mt5-bridge", as in
deploy/prometheus.yml). Its variables are `bridge_job` and `bridge_instance`, so the "MT5 dashboards" link,
which carries the variables along, never narrows the bridge's panels to the agent's job. The series names
are the bridge's (it never imports the agent); tests check each against a real BridgeMetrics registry.
"""

from __future__ import annotations

import warnings
from typing import Any

from agent.telemetry.promql import selector

with warnings.catch_warnings():  # the v1 Dashboard builder warns at import; v1 JSON is what we provision
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import stat, statetimeline, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import (
    DASHED,
    DATASOURCE,
    alerts_annotation,
    base_dashboard,
    builtin_annotation,
    prom,
    quantile_panel,
    query_variable,
    threshold_steps,
    up_mappings,
)

UID = "mt5-bridge"
BRIDGE_JOB = "mt5-bridge"
BRIDGE_JOB_SELECTOR = f'job="{BRIDGE_JOB}"'
TARGET = 'job=~"$bridge_job", instance=~"$bridge_instance"'
SCRAPE_UP = "up"

# The bridge's families (bridge/metrics.py) and their labels.
TERMINAL_UP = "mt5_bridge_terminal_up"
CALL_DURATION = "mt5_bridge_terminal_call_duration_seconds"
LOCK_WAIT = "mt5_bridge_terminal_lock_wait_seconds"
CALL_FAILURES = "mt5_bridge_terminal_call_failures_total"
HTTP_DURATION = "mt5_bridge_http_request_duration_seconds"
BUILD_INFO = "mt5_bridge_build_info"
TERMINAL = "terminal"
FUNCTION = "function"
REASON = "reason"
ROUTE = "route"
CODE_CLASS = "code_class"
VERSION = "version"
SERVER_ERRORS = "5xx"
# Share of 5xx answers drawn orange and red (no alert watches it: the agent's MT5BridgeDown does).
ERROR_RATIO_STEPS = ((None, "green"), (0.01, "orange"), (0.05, "red"))


def _variables(bridge_job: str) -> list[cogbuilder.Builder[model.VariableModel]]:
    jobs = selector(SCRAPE_UP, bridge_job)
    instances = selector(SCRAPE_UP, bridge_job, 'job=~"$bridge_job"')
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_variable("bridge_job", "Job", f"label_values({jobs}, job)"),
        query_variable("bridge_instance", "Instance", f"label_values({instances}, instance)"),
    ]


def _stat(title: str, description: str, expr: str, legend: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .with_target(prom(expr, legend=legend, instant=True))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )


def _error_ratio(sel: str, window: str) -> str:
    count = f"{HTTP_DURATION}_count"
    errors = selector(count, sel, f'{CODE_CLASS}="{SERVER_ERRORS}"')
    return f"(sum(rate({errors}[{window}])) or vector(0))\n/\nsum(rate({selector(count, sel)}[{window}]))"


def dashboard(*, bridge_job_selector: str, alerts_expr: str, runbook_url: str, alert: str) -> dash.Dashboard:
    """The bridge dashboard (not built: the caller places nothing more). `alerts_expr` selects the
    firing alerts about the bridge (the agent's); `runbook_url` is `alert`'s runbook entry."""
    sel = f"{bridge_job_selector}, {TARGET}"
    d = base_dashboard(
        UID,
        "MT5 bridge",
        "The MT5 bridge's own metrics: each terminal up or down, MT5 call and lock-wait latency, failed "
        "calls by function and reason, HTTP latency by route and the share of 5xx answers. The agent's view "
        "of the bridge (mt5_bridge_up, request latency) is on MT5 sync health.",
        _variables(bridge_job_selector),
        [builtin_annotation(), alerts_annotation(alerts_expr)],
    ).link(
        dash.DashboardLink(f"Runbook: {alert}")
        .type(model.DashboardLinkType.LINK)
        .url(runbook_url)
        .tooltip(f"What {alert} means and what to do")
        .target_blank(True)
    )
    up = (
        _stat(
            "Bridge",
            "Prometheus' last scrape of the bridge's /metrics.",
            f"min({selector(SCRAPE_UP, sel)})",
            "up",
        )
        .mappings(up_mappings())
        .thresholds(threshold_steps((None, "red"), (1, "green")))
    )
    down = _stat(
        "Terminals down",
        "Terminals the bridge cannot read now (failed initialize, disconnected from the trade server, or a "
        "call that timed out).",
        f"count(max by ({TERMINAL}) ({selector(TERMINAL_UP, sel)}) == 0) or vector(0)",
        "down",
    ).thresholds(threshold_steps((None, "green"), (1, "red")))
    failed = (
        _stat(
            "Failed MT5 calls (1h)",
            "MT5 calls that failed in the last hour, every function and reason.",
            f"sum(increase({selector(CALL_FAILURES, sel)}[1h]))",
            "failed",
        )
        .decimals(0)
        .thresholds(threshold_steps((None, "green"), (1, "orange")))
    )
    errors = (
        _stat(
            "HTTP 5xx (1h)",
            "Share of the bridge's HTTP answers in the last hour that were 5xx.",
            _error_ratio(sel, "1h"),
            "5xx",
        )
        .unit("percentunit")
        .decimals(2)
        .thresholds(threshold_steps(*ERROR_RATIO_STEPS))
    )
    version = (
        _stat(
            "Bridge version",
            "Version of the running bridge.",
            f"max by ({VERSION}) ({selector(BUILD_INFO, sel)})",
            "{{version}}",
        )
        .text_mode(common.BigValueTextMode.NAME)
        .color_mode(common.BigValueColorMode.NONE)
    )
    timeline = (
        statetimeline.Panel()
        .title("Terminal up")
        .description(
            "Each terminal over time: green while the bridge reaches it and it is connected, red not."
        )
        .with_target(prom(f"max by ({TERMINAL}) ({selector(TERMINAL_UP, sel)})", legend="{{terminal}}"))
        .mappings(up_mappings())
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(80)
        .decimals(0)
    )
    calls = quantile_panel(
        "MT5 call duration p95 by function", selector(f"{CALL_DURATION}_bucket", sel), (FUNCTION,), (0.95,)
    ).description("95th percentile of MT5 calls on the terminals' worker threads, by function.")
    lock = quantile_panel(
        "Terminal lock wait", selector(f"{LOCK_WAIT}_bucket", sel), (), (0.5, 0.95, 0.99)
    ).description(
        "Time a request waited for its terminal's lock (one account at a time per terminal): long waits "
        "mean the terminal serves too many accounts for the poll period."
    )
    failures = (
        timeseries.Panel()
        .title("MT5 call failures by function and reason (per minute)")
        .description("Failed MT5 calls per minute. Empty while every call succeeds.")
        .with_target(
            prom(
                f"60 * sum by ({FUNCTION}, {REASON}) "
                f"(rate({selector(CALL_FAILURES, sel)}[$__rate_interval])) > 0",
                legend="{{function}} {{reason}}",
            )
        )
        .unit("none")
        .decimals(1)
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    http = quantile_panel(
        "HTTP request duration p95 by route", selector(f"{HTTP_DURATION}_bucket", sel), (ROUTE,), (0.95,)
    ).description("95th percentile of the bridge's HTTP requests, by route template.")
    ratio = (
        timeseries.Panel()
        .title("HTTP 5xx ratio")
        .description("Share of the bridge's HTTP answers that were 5xx (dashed: 1 % orange, 5 % red).")
        .with_target(prom(_error_ratio(sel, "$__rate_interval"), legend="5xx"))
        .unit("percentunit")
        .min(0)
        .thresholds(threshold_steps(*ERROR_RATIO_STEPS))
        .thresholds_style(DASHED)
        .line_width(2)
    )
    requests = (
        timeseries.Panel()
        .title("HTTP requests by route and status class")
        .with_target(
            prom(
                f"sum by ({ROUTE}, {CODE_CLASS}) "
                f"(rate({selector(f'{HTTP_DURATION}_count', sel)}[$__rate_interval]))",
                legend="{{route}} {{code_class}}",
            )
        )
        .unit("reqps")
        .min(0)
    )
    layout: list[tuple[Any, int, int, int, int]] = [  # panel builders of several kinds
        (up, 0, 0, 4, 4),
        (down, 4, 0, 5, 4),
        (failed, 9, 0, 5, 4),
        (errors, 14, 0, 5, 4),
        (version, 19, 0, 5, 4),
        (timeline, 0, 4, 24, 6),
        (calls, 0, 10, 12, 8),
        (lock, 12, 10, 12, 8),
        (failures, 0, 18, 12, 8),
        (http, 12, 18, 12, 8),
        (ratio, 0, 26, 12, 8),
        (requests, 12, 26, 12, 8),
    ]
    for pid, (panel, x, y, w, h) in enumerate(layout, start=1):
        d = d.with_panel(panel.id(pid).grid_pos(model.GridPos(x=x, y=y, w=w, h=h)).datasource(DATASOURCE))
    return d
