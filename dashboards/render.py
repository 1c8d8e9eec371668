"""Generate the Grafana dashboards (JSON) from code with grafana-foundation-sdk.

The agent's three dashboards: the accounts overview (its table drills down to), one account, and sync
health; the overview and the account end with a "Positions and trade events" row (dashboards/trades.py).
A fourth, the bridge's own metrics (dashboards/bridge.py), selects the bridge's job (render option
`bridge_job_selector`) with variables of its own. In the agent's, every
query selects through the job selector and the `job`/`instance` variables; money panels show one
currency each (a `currency` variable, joined from mt5_account_info; the overview repeats them per
currency); annotations mark firing MT5 alerts and failed or skipped syncs; panels whose queries are what an
alert compares link to its runbook entry (ALERT_SIGNALS).

Colour thresholds for data age come from `agent.domain.freshness.Thresholds`, like the alert rules' fallback;
the data-age panel also draws the thresholds the agent classifies with (`mt5_freshness_threshold_seconds`).
Every metric and label name comes from the agent's metric catalog (agent.telemetry.catalog). Render options
shared with alerts/render.py (from agent.telemetry): the job selector (label matchers of the agent's targets,
in every query) and the runbook URL pattern (panel links to the runbook entry of the matching alert).
Run `mt5-agent render dashboards` to regenerate the committed files.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.domain.accounts import DataSource
from agent.domain.freshness import STATES, State, Thresholds
from agent.domain.runs import RunResult
from agent.telemetry import catalog as m
from agent.telemetry.alerting import (
    DEFAULT_RISK,
    RUNBOOK_URL,
    SUCCESS_OBJECTIVE,
    SUCCESS_WINDOW,
    SYNC_FAILURES_IN_A_ROW,
    RiskLevels,
    runbook_link,
)
from agent.telemetry.catalog import JOB_SELECTOR
from agent.telemetry.promql import check_job_selector, equals, selector, success_ratio_expr

with warnings.catch_warnings():  # the v1 Dashboard builder warns at import; v1 JSON is what we provision
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards import bridge, trades
from dashboards import risk as risk_rows
from dashboards.panels import (
    DASHED,
    DATASOURCE,
    alerts_annotation,
    base_dashboard,
    builtin_annotation,
    by_names,
    coloured,
    prom,
    prom_table,
    prop,
    quantile_panel,
    query_variable,
    threshold_steps,
    tile,
    up_mappings,
)

OVERVIEW_UID = "mt5-accounts-overview"
SYNC_UID = "mt5-sync-health"
ACCOUNT_UID = "mt5-account"
BRIDGE_UID = bridge.UID
FILES = {uid: f"{uid}.json" for uid in (OVERVIEW_UID, SYNC_UID, ACCOUNT_UID, BRIDGE_UID)}
ACCOUNT = f'{m.ACCOUNT}=~"$account"'
CURRENCY = f'{m.CURRENCY}=~"$currency"'
# The job/instance variables narrow the rendered job selector (which stays in every query and variable).
JOB_VAR = f'{m.JOB}=~"$job"'
TARGET = f'{JOB_VAR}, {m.INSTANCE}=~"$instance"'
# Prometheus' own series of the alerts its rules evaluate, and the name prefix of ours (DESIGN 9).
# (Not in agent.telemetry.catalog, which lists what the agent exports; ask to move it there.)
ALERTS_SERIES = "ALERTS"
ALERT_PREFIX = "MT5"
# The alert about the bridge (the agent's probe of it): the bridge dashboard links its runbook entry.
BRIDGE_ALERT = "MT5BridgeDown"
# Which alerts a panel is "about": the families each alert's condition compares. A panel that queries one
# of them links to that alert's runbook entry (tests check these families occur in the alert's rule).
ALERT_SIGNALS: dict[str, tuple[str, ...]] = {
    "MT5AccountDataDegraded": (m.ACCOUNT_DATA_AGE.series, m.ACCOUNT_FRESHNESS.series),
    "MT5AccountDataCritical": (m.ACCOUNT_DATA_AGE.series, m.ACCOUNT_FRESHNESS.series),
    "MT5AccountSyncFailing": (m.ACCOUNT_CONSECUTIVE_FAILURES.series,),
    "MT5BridgeDown": (m.BRIDGE_UP.series,),
    "MT5StoreDown": (m.STORE_UP.series,),
    "MT5AgentDown": (m.SCRAPE_UP,),
    "MT5SyncSuccessRateLow": (m.SYNC_RUNS.series,),
    "MT5AccountPositionsStale": (m.ACCOUNT_POSITIONS_LAST_POLL.series, m.TRADE_EVENTS_AVAILABLE.series),
    "MT5AccountMarginLevelLow": (m.ACCOUNT_MARGIN_LEVEL_RATIO.series,),
    "MT5AccountDrawdownHigh": (m.ACCOUNT_EQUITY_PEAK.series,),
}
STATE_COLOURS = {
    State.FRESH.value: "green",
    State.ACCEPTABLE.value: "yellow",
    State.DEGRADED.value: "orange",
    State.CRITICAL.value: "red",
}
# Colours by the catalog's closed label values: the last run's outcomes and the runs' results.
OUTCOME_COLOURS = dict(zip(m.RUN_OUTCOMES, ("green", "orange", "red"), strict=True))
RESULT_COLOURS = {
    RunResult.SUCCESS.value: "green",
    RunResult.PARTIAL.value: "orange",
    RunResult.FAILED.value: "red",
    RunResult.SKIPPED.value: "blue",
}
AGE_COLUMN = "Data age (min)"
# Grafana macros and variables -> values that make every expression plain, valid PromQL.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$account": ".*",
    "$currency": ".*",
    "$job": ".*",
    "$instance": ".*",
    "$bridge_job": ".*",
    "$bridge_instance": ".*",
}

assert set(STATE_COLOURS) == {str(s) for s in STATES}, "a freshness state without a colour"
assert set(RESULT_COLOURS) == set(m.RESULTS), "a run result without a colour"


def freshness_steps(thresholds: Thresholds) -> list[model.Threshold]:
    """Data-age colour steps: green (fresh), yellow, orange, red at the Thresholds boundaries."""
    return [
        model.Threshold(value=None, color=STATE_COLOURS["fresh"]),
        model.Threshold(value=thresholds.acceptable_after, color=STATE_COLOURS["acceptable"]),
        model.Threshold(value=thresholds.degraded_after, color=STATE_COLOURS["degraded"]),
        model.Threshold(value=thresholds.critical_after, color=STATE_COLOURS["critical"]),
    ]


def _age_panel(title: str, description: str, age: str, job: str, thresholds: Thresholds) -> timeseries.Panel:
    """Live data age per account (`age`: the query) beside the thresholds the agent exports, with the
    rendered thresholds as dashed lines: the overview's and the per-account dashboard's age panel."""
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .targets(
            [
                prom(f"max by ({m.ACCOUNT}) ({age})", legend="{{account}}", ref="A"),
                prom(
                    f"max by ({m.STATE}) ({selector(m.FRESHNESS_THRESHOLD.series, job, TARGET)})",
                    legend="{{state}} from",
                    ref="B",
                ),
            ]
        )
        .unit("s")
        .min(0)
        .thresholds(_age_thresholds(thresholds))
        .thresholds_style(DASHED)
        .line_width(2)
    )


def _age_thresholds(thresholds: Thresholds, per: float = 1) -> dash.ThresholdsConfig:
    steps = freshness_steps(thresholds)
    for step in steps:
        step.value = None if step.value is None else step.value / per
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def _age_tile(title: str, expr: str, legend: str, thresholds: Thresholds) -> stat.Panel:
    """An age in seconds, coloured by the freshness thresholds the agent classifies with."""
    return (
        tile(title)
        .with_target(prom(expr, legend=legend, instant=True))
        .unit("s")
        .thresholds(_age_thresholds(thresholds))
    )


def _state_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                state: model.ValueMappingResult(text=state, color=colour, index=i)
                for i, (state, colour) in enumerate(STATE_COLOURS.items())
            }
        )
    ]


def _source_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                DataSource.LIVE: model.ValueMappingResult(text=DataSource.LIVE, color="green", index=0),
                DataSource.STORED: model.ValueMappingResult(text=DataSource.STORED, color="orange", index=1),
            }
        )
    ]


def _place(panel: Any, pid: int, x: int, y: int, w: int, h: int, runbook_url: str) -> Any:
    """Position the panel; link it to the runbooks of the alerts its queries are about."""
    exprs = [t.expr for t in panel.build().targets or []]
    if alerts := _signals(exprs):
        panel = panel.links(_runbook_links(alerts, runbook_url))
    return panel.id(pid).grid_pos(model.GridPos(x=x, y=y, w=w, h=h)).datasource(DATASOURCE)


def _with_row(
    d: dash.Dashboard, pid: int, y: int, row: dash.Row, cells: Sequence[trades.Cell], runbook_url: str
) -> dash.Dashboard:
    """An expanded row at line `y` (id `pid`), then its panels below it (ids following, `cells`' y relative
    to the line under the row's header)."""
    d = d.with_row(row.id(pid).grid_pos(model.GridPos(x=0, y=y, w=24, h=1)))
    for i, (panel, x, dy, w, h) in enumerate(cells, start=pid + 1):
        d = d.with_panel(_place(panel, i, x, y + 1 + dy, w, h, runbook_url))
    return d


def _variables(job: str, *, one_account: bool = False) -> list[cogbuilder.Builder[model.VariableModel]]:
    """datasource, job and instance (within the job selector), account, currency (of the accounts shown).

    Per-account: one account, and its currency as a hidden variable (the money panels' titles show it)."""
    target = f"{job}, {TARGET}"
    info = m.ACCOUNT_INFO.series
    accounts = f"label_values({selector(info, target)}, {m.ACCOUNT})"
    variables: list[cogbuilder.Builder[model.VariableModel]] = [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_variable("job", "Job", f"label_values({selector(m.SCRAPE_UP, job)}, {m.JOB})"),
        query_variable(
            "instance",
            "Instance",
            f"label_values({selector(m.SCRAPE_UP, job, JOB_VAR)}, {m.INSTANCE})",
        ),
    ]
    if one_account:
        currency = f"label_values({selector(info, target, ACCOUNT)}, {m.CURRENCY})"
        return [
            *variables,
            query_variable("account", "Account", accounts, multi=False),
            query_variable("currency", "Currency", currency, multi=False).hide(
                model.VariableHide.HIDE_VARIABLE
            ),
        ]
    currencies = f"label_values({selector(info, target, ACCOUNT)}, {m.CURRENCY})"
    return [
        *variables,
        query_variable("account", "Account", accounts),
        query_variable("currency", "Currency", currencies),
    ]


def _signals(exprs: Sequence[str]) -> list[str]:
    """The alerts (ALERT_SIGNALS) whose compared families these queries select."""
    return [
        alert
        for alert, families in ALERT_SIGNALS.items()
        if any(re.search(rf"(?<![\w:]){re.escape(f)}\{{", e) for f in families for e in exprs)
    ]


def _runbook_links(
    alertnames: Sequence[str], runbook_url: str
) -> list[cogbuilder.Builder[model.DashboardLink]]:
    """Panel links to the runbook entries of the alerts the panel is about."""
    return [
        dash.DashboardLink(f"Runbook: {alertname}")
        .type(model.DashboardLinkType.LINK)
        .url(runbook_link(runbook_url, alertname))
        .tooltip(f"What {alertname} means and what to do")
        .target_blank(True)
        for alertname in alertnames
    ]


def _annotations(job: str) -> list[cogbuilder.Builder[model.AnnotationQuery]]:
    """Firing MT5 alerts and failed or skipped sync runs, over every panel (within job/instance)."""
    target = f"{job}, {TARGET}"
    alerts = selector(ALERTS_SERIES, target, f'alertname=~"{ALERT_PREFIX}.*"', 'alertstate="firing"')
    bad = "|".join((RunResult.FAILED, RunResult.SKIPPED))
    runs = selector(m.SYNC_RUNS.series, target, f'{m.RESULT}=~"{bad}"')
    return [
        builtin_annotation(),
        alerts_annotation(alerts),
        dash.AnnotationQuery()
        .name("Failed syncs")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("orange")
        .expr(f"sum by ({m.RESULT}) (increase({runs}[$__rate_interval])) > 0")
        .step("60s")
        .title_format("Sync {{result}}")
        .text_format("{{result}} sync runs")
        .tag_keys(m.RESULT),
    ]


def _dashboard(
    uid: str, title: str, description: str, job: str, *, one_account: bool = False
) -> dash.Dashboard:
    return base_dashboard(
        uid, title, description, _variables(job, one_account=one_account), _annotations(job)
    )


def _freshness_code(sel: str) -> str:
    """Each account's freshness state as its index in STATES (0 fresh .. 3 critical), for a state timeline."""
    parts = [
        f"{selector(m.ACCOUNT_FRESHNESS.series, sel, equals(m.STATE, state))} * {i}"
        for i, state in enumerate(STATES)
    ]
    return f"max by ({m.ACCOUNT}) (\n  " + "\n  or ".join(parts) + "\n)"


def _state_code_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                str(i): model.ValueMappingResult(text=state, color=colour, index=i)
                for i, (state, colour) in enumerate(STATE_COLOURS.items())
            }
        )
    ]


def _freshness_timeline(sel: str, title: str) -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .title(title)
        .description(
            "The agent's freshness state of each account over time (DESIGN 6): green fresh, yellow "
            "acceptable, orange degraded, red critical."
        )
        .with_target(prom(_freshness_code(sel), legend="{{account}}"))
        .mappings(_state_code_mappings())
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(80)
        .decimals(0)
    )


def _joined(family: m.Family, sel: str) -> str:
    """`family` per account, joined with its currency from mt5_account_info (only $currency's accounts)."""
    info = f"max by ({m.ACCOUNT}, {m.CURRENCY}) ({selector(m.ACCOUNT_INFO.series, sel, CURRENCY)})"
    return (
        f"max by ({m.ACCOUNT}, {m.CURRENCY}) ("
        f"{selector(family.series, sel)} * on({m.ACCOUNT}) group_left({m.CURRENCY}) {info})"
    )


def _money(title: str, family: m.Family, sel: str, *, repeat: bool) -> timeseries.Panel:
    """Money in one currency per panel: the queries keep only $currency's accounts; on the overview the
    panel repeats per selected currency (Grafana cannot template a unit, so the code is in the title)."""
    panel = (
        timeseries.Panel()
        .title(f"{title} (${{currency}})")
        .description(
            f"{family.series} as read from the MT5 terminal, per account, in ${{currency}} only: accounts "
            "in other currencies are on their own panel, never on this axis."
        )
        .with_target(prom(_joined(family, sel), legend="{{account}} {{currency}}"))
        .unit("none")
        .decimals(2)
        .line_width(2)
        .span_nulls(False)
    )
    return panel.repeat("currency").repeat_direction("h").max_per_row(2) if repeat else panel


def accounts_overview(
    thresholds: Thresholds,
    *,
    job_selector: str = JOB_SELECTOR,
    runbook_url: str = RUNBOOK_URL,
    risk: RiskLevels = DEFAULT_RISK,
) -> model.Dashboard:
    """Fleet freshness at a glance, every account's figures, freshness and data age over time, money per
    currency."""
    job = check_job_selector(job_selector)
    acc = f"{job}, {TARGET}, {ACCOUNT}"
    age = selector(m.ACCOUNT_DATA_AGE.series, acc)
    d = _dashboard(
        OVERVIEW_UID,
        "MT5 accounts overview",
        "Freshness, balances and data source of every MT5 account. Data age is the age of the last LIVE "
        f"terminal data; colours follow the freshness thresholds ({thresholds}), the data-age graph also "
        "draws the thresholds the agent classifies (and alerts) with. Money panels: one per currency. "
        "Click an account in the table for its own dashboard. Then: open positions, trade events, "
        "detection delay and the positions poller's health; last row: risk (margin level against the "
        "alert thresholds, largest open loss, net exposure per symbol, equity drawdowns).",
        job,
    )
    per_state: list[cogbuilder.Builder[variants.Dataquery]] = [
        prom(
            f"sum(max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_FRESHNESS.series, equals(m.STATE, state), acc)}))"
            " or vector(0)",
            legend=str(state),
            ref=chr(ord("A") + i),
            instant=True,
        )
        for i, state in enumerate(STATES)
    ]

    freshness = (
        tile("Accounts by freshness")
        .description("Number of accounts in each freshness state (the agent's classification).")
        .targets(per_state)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .unit("none")
        .decimals(0)
    )
    freshness = coloured(freshness, STATE_COLOURS)

    oldest = _age_tile("Oldest live data", f"max({age})", "oldest", thresholds).description(
        "Age of the stalest account's last live data."
    )
    stored = (
        tile("Accounts on stored data")
        .description("Accounts whose last sync fell back to VPS_STORED (no live_data from the bridge).")
        .with_target(
            prom(
                f"count(max by ({m.ACCOUNT}) "
                f"({selector(m.ACCOUNT_DATA_SOURCE.series, equals(m.SOURCE, DataSource.STORED), acc)}) == 1)"
                " or vector(0)",
                legend="stored",
                instant=True,
            )
        )
        .unit("none")
        .thresholds(threshold_steps((None, "green"), (1, "orange")))
    )

    # The schema allows only object-valued override properties (no per-column unit/decimals), so the
    # table shares decimals=2 and unit none; margin level is shown in % and data age in minutes. Money
    # columns are in each row's own currency (the Currency column), only $currency's accounts.
    columns = [
        (
            "A",
            f"max by ({', '.join(m.ACCOUNT_INFO.labels)}) ({selector(m.ACCOUNT_INFO.series, acc, CURRENCY)})",
        ),
        ("B", _joined(m.ACCOUNT_BALANCE, acc)),
        ("C", _joined(m.ACCOUNT_EQUITY, acc)),
        ("D", _joined(m.ACCOUNT_PROFIT, acc)),
        ("E", f"100 * max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_MARGIN_LEVEL_RATIO.series, acc)})"),
        ("F", f"max by ({m.ACCOUNT}) ({age}) / 60"),
        ("G", f"max by ({m.ACCOUNT}, {m.STATE}) ({selector(m.ACCOUNT_FRESHNESS.series, acc)}) == 1"),
        ("H", f"max by ({m.ACCOUNT}, {m.SOURCE}) ({selector(m.ACCOUNT_DATA_SOURCE.series, acc)}) == 1"),
    ]
    # Every row is an account in $currency: the other columns keep only those accounts too.
    in_currency = f" and on({m.ACCOUNT}) {selector(m.ACCOUNT_INFO.series, acc, CURRENCY)}"
    columns = [(ref, expr if i < 4 else f"({expr}){in_currency}") for i, (ref, expr) in enumerate(columns)]
    names = {
        "account": "Account",
        "name": "Name",
        "server": "Server",
        "currency": "Currency",
        "Value #B": "Balance",
        "Value #C": "Equity",
        "Value #D": "Profit",
        "Value #E": "Margin level %",
        "Value #F": AGE_COLUMN,
        "state": "Freshness",
        "source": "Data source",
    }
    table_targets: list[cogbuilder.Builder[variants.Dataquery]] = [
        prom_table(expr, ref) for ref, expr in columns
    ]
    accounts = (
        table.Panel()
        .title("Accounts")
        .description(
            "Every account: figures as last read from the MT5 terminal (in the account's currency), age of "
            "the last live data (minutes), freshness state and where the stored figures came from. Click a "
            "row for the account's dashboard."
        )
        .targets(table_targets)
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            model.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "Value #A": True, "Value #G": True, "Value #H": True},
                    "indexByName": {field: i for i, field in enumerate(names)},
                    "renameByName": names,
                },
            )
        )
        .sort_by([common_builders.TableSortByFieldState().display_name(AGE_COLUMN).desc(True)])
        .unit("none")
        .decimals(2)
        .data_links([_account_link()])
        .mappings(_state_mappings() + _source_mappings())
        .with_override(
            by_names(AGE_COLUMN),
            [
                prop("thresholds", _age_thresholds(thresholds, per=60).build()),
                prop("custom.cellOptions", {"type": "color-background"}),
            ],
        )
        .with_override(by_names("Freshness"), [prop("custom.cellOptions", {"type": "color-background"})])
        .with_override(by_names("Data source"), [prop("custom.cellOptions", {"type": "color-text"})])
    )

    age_panel = _age_panel(
        "Live data age",
        "Age of each account's last live data; dashed lines at the rendered acceptable, degraded and "
        "critical thresholds, and the thresholds the agent exports ('<state> from').",
        age,
        job,
        thresholds,
    )

    for pid, (panel, x, y, w, h) in enumerate(
        [
            (freshness, 0, 0, 14, 5),
            (oldest, 14, 0, 5, 5),
            (stored, 19, 0, 5, 5),
            (accounts, 0, 5, 24, 10),
            (_freshness_timeline(acc, "Freshness by account"), 0, 15, 24, 8),
            (_money("Balance", m.ACCOUNT_BALANCE, acc, repeat=True), 0, 23, 12, 8),
            (_money("Equity", m.ACCOUNT_EQUITY, acc, repeat=True), 12, 23, 12, 8),
            (age_panel, 0, 31, 24, 8),
        ],
        start=1,
    ):
        d = d.with_panel(_place(panel, pid, x, y, w, h, runbook_url))
    target = f"{job}, {TARGET}"
    cells = trades.overview_cells(acc, target)
    d = _with_row(d, pid + 1, 39, trades.row(), cells, runbook_url)
    y = 39 + 1 + max(dy + h for _, _, dy, _, h in cells)
    risk_cells = risk_rows.overview_cells(acc, risk, _joined)
    return _with_row(d, pid + 2 + len(cells), y, risk_rows.row(), risk_cells, runbook_url).build()


def _account_link() -> cogbuilder.Builder[model.DashboardLink]:
    """Data link of the accounts table: the clicked row's account on the per-account dashboard, keeping the
    time range and the data source, job and instance."""
    url = (
        f"/d/{ACCOUNT_UID}/{ACCOUNT_UID}?var-account=${{__data.fields.Account}}"
        "&var-datasource=${datasource}&${job:queryparam}&${instance:queryparam}&${__url_time_range}"
    )
    return (
        dash.DashboardLink("Account ${__data.fields.Account}")
        .type(model.DashboardLinkType.LINK)
        .url(url)
        .tooltip("Open the account's dashboard")
        .target_blank(False)
    )


def sync_health(
    thresholds: Thresholds, *, job_selector: str = JOB_SELECTOR, runbook_url: str = RUNBOOK_URL
) -> model.Dashboard:
    """Sync cycles, failures, bridge and store health and latency."""
    job = check_job_selector(job_selector)
    target = f"{job}, {TARGET}"
    acc = f"{target}, {ACCOUNT}"
    d = _dashboard(
        SYNC_UID,
        "MT5 sync health",
        "The agent's sync cycles: duration, results, failures by account and reason, bridge and store "
        "health.",
        job,
    )

    def sel(metric: str) -> str:
        return selector(metric, target)

    def _up(title: str, expr: str) -> stat.Panel:
        return (
            tile(title)
            .with_target(prom(expr, legend=title, instant=True))
            .mappings(up_mappings())
            .thresholds(threshold_steps((None, "red"), (1, "green")))
        )

    success = (
        tile(f"Sync success ({SUCCESS_WINDOW})")
        .description(
            f"Share of sync runs that fully succeeded over {SUCCESS_WINDOW} "
            "(skipped, failed and partial runs count against it); "
            f"objective {SUCCESS_OBJECTIVE:.0%}; MT5SyncSuccessRateLow alerts on its burn rate."
        )
        .with_target(prom(success_ratio_expr(job_selector=target), legend="success", instant=True))
        .unit("percentunit")
        .decimals(2)
        .thresholds(threshold_steps((None, "red"), (SUCCESS_OBJECTIVE, "green")))
    )
    last_success = _age_tile(
        "Since last successful sync", f"time() - max({sel(m.SYNC_LAST_SUCCESS.series)})", "age", thresholds
    )
    last_run = (
        stat.Panel()
        .title("Last run: accounts by outcome")
        .with_target(
            prom(
                f"max by ({m.OUTCOME}) ({sel(m.SYNC_LAST_RUN_ACCOUNTS.series)})",
                legend="{{outcome}}",
                instant=True,
            )
        )
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .unit("none")
    )
    last_run = coloured(last_run, OUTCOME_COLOURS)

    def _quantiles(title: str, family: m.Family, quantiles: Sequence[float]) -> timeseries.Panel:
        return quantile_panel(title, sel(family.bucket), family.labels, quantiles)

    runs = (
        timeseries.Panel()
        .title("Sync runs by result (per hour)")
        .with_target(
            prom(f"sum by ({m.RESULT}) (increase({sel(m.SYNC_RUNS.series)}[1h]))", legend="{{result}}")
        )
        .unit("none")
        .min(0)
    )
    runs = coloured(runs, RESULT_COLOURS)
    failures = (
        timeseries.Panel()
        .title("Sync failures by account and reason (per hour)")
        .with_target(
            prom(
                f"sum by ({m.ACCOUNT}, {m.REASON}) "
                f"(increase({selector(m.ACCOUNT_SYNC_FAILURES.series, acc)}[1h])) > 0",
                legend="{{account}} {{reason}}",
            )
        )
        .unit("none")
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    consecutive = (
        timeseries.Panel()
        .title("Consecutive failures by account")
        .description(f"MT5AccountSyncFailing fires at {SYNC_FAILURES_IN_A_ROW} failures in a row.")
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_CONSECUTIVE_FAILURES.series, acc)})",
                legend="{{account}}",
            )
        )
        .unit("none")
        .min(0)
        .decimals(0)
        .thresholds(threshold_steps((None, "green"), (SYNC_FAILURES_IN_A_ROW, "red")))
        .thresholds_style(DASHED)
    )
    components = (
        timeseries.Panel()
        .title("Bridge and store up")
        .targets(
            [
                prom(f"min({sel(m.BRIDGE_UP.series)})", legend="bridge", ref="A"),
                prom(f"min({sel(m.STORE_UP.series)})", legend="store", ref="B"),
            ]
        )
        .unit("none")
        .min(0)
        .max(1)
        .mappings(up_mappings())
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
    )
    build = (
        stat.Panel()
        .title("Agent version")
        .with_target(
            prom(
                f"max by ({m.VERSION}) ({sel(m.AGENT_BUILD_INFO.series)})", legend="{{version}}", instant=True
            )
        )
        .text_mode(common.BigValueTextMode.NAME)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.NONE)
    )

    cycle = _quantiles("Sync cycle duration", m.SYNC_DURATION, (0.5, 0.9, 0.99))
    bridge = _quantiles("Bridge request latency", m.BRIDGE_REQUEST_DURATION, (0.5, 0.99))
    store = _quantiles("Store operation latency", m.STORE_OPERATION_DURATION, (0.99,))
    layout = [
        (_up("Agent", f"min({sel(m.SCRAPE_UP)})"), 0, 0, 3, 4),
        (_up("Bridge", f"min({sel(m.BRIDGE_UP.series)})"), 3, 0, 3, 4),
        (_up("Store", f"min({sel(m.STORE_UP.series)})"), 6, 0, 3, 4),
        (success, 9, 0, 4, 4),
        (last_success, 13, 0, 4, 4),
        (last_run, 17, 0, 4, 4),
        (build, 21, 0, 3, 4),
        (cycle, 0, 4, 12, 8),
        (runs, 12, 4, 12, 8),
        (failures, 0, 12, 12, 8),
        (consecutive, 12, 12, 12, 8),
        (bridge, 0, 20, 12, 8),
        (store, 12, 20, 12, 8),
        (components, 0, 28, 24, 6),
    ]
    for pid, (panel, x, y, w, h) in enumerate(layout, start=1):
        d = d.with_panel(_place(panel, pid, x, y, w, h, runbook_url))
    return d.build()


def account_detail(
    thresholds: Thresholds,
    *,
    job_selector: str = JOB_SELECTOR,
    runbook_url: str = RUNBOOK_URL,
    risk: RiskLevels = DEFAULT_RISK,
) -> model.Dashboard:
    """One account (the overview's table links here): state, source, money in its currency, age, failures."""
    job = check_job_selector(job_selector)
    acc = f"{job}, {TARGET}, {ACCOUNT}"
    age = selector(m.ACCOUNT_DATA_AGE.series, acc)
    d = _dashboard(
        ACCOUNT_UID,
        "MT5 account",
        "One MT5 account: its freshness state and history, data source, balance, equity, margin and profit "
        f"in the account's currency, live data age (thresholds {thresholds}), sync failures, open positions "
        "and the age of its last positions poll; its risk (margin level against the alert thresholds, "
        "largest open loss, net exposure per symbol, equity drawdowns).",
        job,
        one_account=True,
    )

    def _now(title: str, expr: str, legend: str) -> stat.Panel:
        return (
            tile(title)
            .with_target(prom(expr, legend=legend, instant=True))
            .text_mode(common.BigValueTextMode.NAME)
        )

    info = _now(
        "Account",
        f"max by ({', '.join(m.ACCOUNT_INFO.labels)}) ({selector(m.ACCOUNT_INFO.series, acc)})",
        "{{account}} {{name}} · {{server}} · {{currency}}",
    ).color_mode(common.BigValueColorMode.NONE)
    state = coloured(
        _now(
            "Freshness",
            f"max by ({m.STATE}) ({selector(m.ACCOUNT_FRESHNESS.series, acc)}) == 1",
            "{{state}}",
        ),
        STATE_COLOURS,
    )
    source = coloured(
        _now(
            "Data source",
            f"max by ({m.SOURCE}) ({selector(m.ACCOUNT_DATA_SOURCE.series, acc)}) == 1",
            "{{source}}",
        ),
        {DataSource.LIVE: "green", DataSource.STORED: "orange"},
    )
    age_now = _age_tile("Live data age", f"max({age})", "age", thresholds)
    failing = (
        tile("Failures in a row")
        .description(f"MT5AccountSyncFailing fires at {SYNC_FAILURES_IN_A_ROW}.")
        .with_target(
            prom(
                f"max({selector(m.ACCOUNT_CONSECUTIVE_FAILURES.series, acc)})",
                legend="in a row",
                instant=True,
            )
        )
        .unit("none")
        .decimals(0)
        .thresholds(threshold_steps((None, "green"), (1, "orange"), (SYNC_FAILURES_IN_A_ROW, "red")))
    )

    def _money_panel(title: str, families: Sequence[tuple[m.Family, str]]) -> timeseries.Panel:
        targets: list[cogbuilder.Builder[variants.Dataquery]] = [
            prom(_joined(family, acc), legend=legend, ref=chr(ord("A") + i))
            for i, (family, legend) in enumerate(families)
        ]
        return (
            timeseries.Panel()
            .title(f"{title} (${{currency}})")
            .description("As read from the MT5 terminal, in the account's currency.")
            .targets(targets)
            .unit("none")
            .decimals(2)
            .line_width(2)
            .span_nulls(False)
        )

    balance = _money_panel(
        "Balance and equity", [(m.ACCOUNT_BALANCE, "balance"), (m.ACCOUNT_EQUITY, "equity")]
    )
    margin = _money_panel("Margin", [(m.ACCOUNT_MARGIN, "used"), (m.ACCOUNT_MARGIN_FREE, "free")])
    profit = _money_panel("Floating profit", [(m.ACCOUNT_PROFIT, "profit")])
    # the margin level (with the alert thresholds) is in the Risk row; the largest open loss beside profit
    loss = risk_rows.loss_panel("Largest open loss", acc, _joined)
    age_panel = _age_panel(
        "Live data age over time",
        "Dashed lines: the rendered thresholds; '<state> from': the ones the agent exports.",
        age,
        job,
        thresholds,
    )
    failures = (
        timeseries.Panel()
        .title("Sync failures by reason (per hour)")
        .with_target(
            prom(
                f"sum by ({m.REASON}) (increase({selector(m.ACCOUNT_SYNC_FAILURES.series, acc)}[1h])) > 0",
                legend="{{reason}}",
            )
        )
        .unit("none")
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    layout = [
        (info, 0, 0, 8, 4),
        (state, 8, 0, 4, 4),
        (source, 12, 0, 4, 4),
        (age_now, 16, 0, 4, 4),
        (failing, 20, 0, 4, 4),
        (_freshness_timeline(acc, "Freshness over time"), 0, 4, 24, 4),
        (balance, 0, 8, 12, 8),
        (margin, 12, 8, 12, 8),
        (profit, 0, 16, 12, 8),
        (loss, 12, 16, 12, 8),
        (age_panel, 0, 24, 12, 8),
        (failures, 12, 24, 12, 8),
    ]
    for pid, (panel, x, y, w, h) in enumerate(layout, start=1):
        d = d.with_panel(_place(panel, pid, x, y, w, h, runbook_url))
    cells = trades.account_cells(acc)
    d = _with_row(d, pid + 1, 32, trades.row(), cells, runbook_url)
    y = 32 + 1 + max(dy + h for _, _, dy, _, h in cells)
    risk_cells = risk_rows.account_cells(acc, risk)
    return _with_row(d, pid + 2 + len(cells), y, risk_rows.row(), risk_cells, runbook_url).build()


def bridge_dashboard(
    thresholds: Thresholds | None = None,
    *,
    job_selector: str = JOB_SELECTOR,
    runbook_url: str = RUNBOOK_URL,
    bridge_job_selector: str = bridge.BRIDGE_JOB_SELECTOR,
) -> model.Dashboard:
    """The bridge's own metrics (dashboards/bridge.py); annotated with the agent's firing alerts about the
    bridge (the agent's job selector) and linked to MT5BridgeDown's runbook."""
    job = check_job_selector(job_selector)
    alerts = selector(ALERTS_SERIES, job, f'alertname=~"{ALERT_PREFIX}Bridge.*"', 'alertstate="firing"')
    return bridge.dashboard(
        bridge_job_selector=check_job_selector(bridge_job_selector),
        alerts_expr=alerts,
        runbook_url=runbook_link(runbook_url, BRIDGE_ALERT),
        alert=BRIDGE_ALERT,
    ).build()


DASHBOARDS: dict[str, Callable[..., model.Dashboard]] = {
    OVERVIEW_UID: accounts_overview,
    SYNC_UID: sync_health,
    ACCOUNT_UID: account_detail,
}
RISK_DASHBOARDS = (OVERVIEW_UID, ACCOUNT_UID)  # those with a Risk row (the `risk` render option)


def to_json(dashboard: model.Dashboard) -> str:
    """Pretty-printed, key-sorted JSON (stable diffs), with a trailing newline."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _build_all(
    thresholds: Thresholds,
    job_selector: str,
    runbook_url: str,
    bridge_job_selector: str,
    risk: RiskLevels = DEFAULT_RISK,
) -> dict[str, str]:
    """Every dashboard's JSON text by uid: the agent's (DASHBOARDS) and the bridge's."""
    built = {
        uid: to_json(
            build(
                thresholds,
                job_selector=job_selector,
                runbook_url=runbook_url,
                **({"risk": risk} if uid in RISK_DASHBOARDS else {}),
            )
        )
        for uid, build in DASHBOARDS.items()
    }
    built[BRIDGE_UID] = to_json(
        bridge_dashboard(
            job_selector=job_selector, runbook_url=runbook_url, bridge_job_selector=bridge_job_selector
        )
    )
    return built


def render(
    thresholds: Thresholds,
    *,
    job_selector: str = JOB_SELECTOR,
    runbook_url: str = RUNBOOK_URL,
    bridge_job_selector: str = bridge.BRIDGE_JOB_SELECTOR,
    risk: RiskLevels = DEFAULT_RISK,
) -> dict[str, dict[str, Any]]:
    """Every dashboard as plain JSON data, by file name."""
    built = _build_all(thresholds, job_selector, runbook_url, bridge_job_selector, risk)
    return {FILES[uid]: json.loads(text) for uid, text in built.items()}


def render_files(
    out_dir: Path,
    thresholds: Thresholds,
    *,
    job_selector: str = JOB_SELECTOR,
    runbook_url: str = RUNBOOK_URL,
    bridge_job_selector: str = bridge.BRIDGE_JOB_SELECTOR,
    risk: RiskLevels = DEFAULT_RISK,
) -> list[Path]:
    """Write every dashboard (FILES) into `out_dir`; return their paths."""
    built = _build_all(thresholds, job_selector, runbook_url, bridge_job_selector, risk)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for uid, text in built.items():
        path = out_dir / FILES[uid]
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel.get("targets", []) if t.get("expr")]


def substitute(expr: str) -> str:
    """Replace Grafana variables and macros by plain values (`$account` -> `.*`, `$__rate_interval` -> 1m)."""
    for name in sorted(SUBSTITUTIONS, key=len, reverse=True):
        expr = expr.replace(name, SUBSTITUTIONS[name])
    if leftover := re.findall(r"\$\{?\w+", expr):
        raise ValueError(f"unsubstituted Grafana variable {leftover} in {expr!r}")
    return expr


def _queries(
    thresholds: Thresholds | None,
    job_selector: str,
    *,
    panels: bool,
    annotations: bool,
    files: Sequence[str] = tuple(FILES.values()),
) -> list[str]:
    queries: list[str] = []
    docs = render(thresholds or Thresholds(), job_selector=job_selector)
    for doc in (docs[name] for name in files):
        exprs = [e for panel in doc["panels"] for e in _exprs(panel)] if panels else []
        if annotations:
            exprs += [a["expr"] for a in doc.get("annotations", {}).get("list", []) if a.get("expr")]
        for expr in exprs:
            if (plain := substitute(expr)) not in queries:
                queries.append(plain)
    return queries


def panel_queries(thresholds: Thresholds | None = None, *, job_selector: str = JOB_SELECTOR) -> list[str]:
    """Every panel's PromQL of the agent's dashboards (the catalog's series), in dashboard order, with
    template variables substituted (runnable as is)."""
    agent = [FILES[uid] for uid in DASHBOARDS]
    return _queries(thresholds, job_selector, panels=True, annotations=False, files=agent)


def bridge_panel_queries() -> list[str]:
    """Every panel's PromQL of the bridge dashboard (the bridge's own series), substituted."""
    return _queries(None, JOB_SELECTOR, panels=True, annotations=False, files=[FILES[BRIDGE_UID]])


def annotation_queries(
    thresholds: Thresholds | None = None, *, job_selector: str = JOB_SELECTOR
) -> list[str]:
    """The annotations' PromQL of every dashboard (firing MT5 alerts from Prometheus' ALERTS, failed
    syncs), substituted."""
    return _queries(thresholds, job_selector, panels=False, annotations=True)
