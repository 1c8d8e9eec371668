"""The "Positions and trade events" rows (DESIGN.md 11): open positions, trade events, detection delay and
the positions poller's health, on the overview (the fleet) and on the per-account dashboard (one account).

Metric and label names come from the catalog. The poll-age colours and dashed line are the limit of
MT5AccountPositionsStale (POSITIONS_STALE_SECONDS), so a red panel is an alert firing or about to. The
event counter and the poll failures and durations have no account label (one poller per source), so the
per-account row shows that account's positions and poll age only.
"""

from __future__ import annotations

import warnings
from typing import Any

from agent.telemetry import catalog as m
from agent.telemetry.alerting import POSITIONS_STALE_SECONDS
from agent.telemetry.promql import selector

with warnings.catch_warnings():  # the v1 Dashboard builder warns at import; v1 JSON is what we provision
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import common as common_builders
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.panels import DASHED, coloured, prom, quantile_panel, threshold_steps

ROW_TITLE = "Positions and trade events"
EVENT_COLOURS = {"TRADE_OPENED": "green", "TRADE_UPDATED": "blue", "TRADE_CLOSED": "purple"}
# The seed's anchor for detection (< 2 s from the terminal's change to the stored event at 1 s polling).
DETECTION_LIMIT_SECONDS = 2.0
DETECTION_QUANTILES = (0.5, 0.95, 0.99)
POLL_QUANTILES = (0.5, 0.99)

assert set(EVENT_COLOURS) == set(m.EVENT_TYPES), "a trade event type without a colour"

# (panel builder, x, y, w, h) with y relative to the row's first line below its header.
Cell = tuple[Any, int, int, int, int]


def _stale_steps() -> dash.ThresholdsConfig:
    return threshold_steps((None, "green"), (POSITIONS_STALE_SECONDS, "red"))


def _poll_age(sel: str) -> str:
    """Seconds since each account's last successful positions poll (the alert's left-hand side)."""
    return f"time() - {selector(m.ACCOUNT_POSITIONS_LAST_POLL.series, sel)}"


def _big(panel: stat.Panel) -> stat.Panel:
    return panel.color_mode(common.BigValueColorMode.BACKGROUND).graph_mode(common.BigValueGraphMode.NONE)


def row() -> dash.Row:
    return dash.Row(ROW_TITLE).collapsed(False)


def _poll_age_panel(title: str, sel: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(
            "Seconds since the last successful positions poll (polled every MT5_AGENT_POSITIONS_INTERVAL, "
            f"1 s by default). Dashed line: MT5AccountPositionsStale fires above {POSITIONS_STALE_SECONDS} s "
            "while the source serves positions."
        )
        .with_target(prom(f"max by ({m.ACCOUNT}) ({_poll_age(sel)})", legend="{{account}}"))
        .unit("s")
        .min(0)
        .thresholds(_stale_steps())
        .thresholds_style(DASHED)
        .line_width(2)
    )


def _open_positions_panel(title: str, sel: str, *, stacked: bool) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(
            "Open positions at each account's last successful positions poll"
            + ("; stacked, so the top line is the fleet total." if stacked else ".")
        )
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_OPEN_POSITIONS.series, sel)})",
                legend="{{account}}",
            )
        )
        .unit("none")
        .decimals(0)
        .min(0)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
    )
    if stacked:
        panel = panel.fill_opacity(20).stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
        )
    return panel


def overview_cells(acc: str, target: str) -> list[Cell]:
    """The fleet: open positions (total and per account), events per minute by type, detection delay,
    poll age per account, poll failures by reason and poll round duration. `acc` selects the agent's
    accounts ($account), `target` the agent (job, instance) for the families without an account label."""
    open_total = _big(
        stat.Panel()
        .title("Open positions")
        .description("Open positions over the selected accounts at their last successful poll.")
        .with_target(
            prom(
                f"sum(max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_OPEN_POSITIONS.series, acc)}))",
                legend="open",
                instant=True,
            )
        )
        .unit("none")
        .decimals(0)
    ).color_mode(common.BigValueColorMode.NONE)
    events_hour = _big(
        stat.Panel()
        .title("Trade events (1h)")
        .description("Trade events stored in the last hour, by type (every account of the agent).")
        .with_target(
            prom(
                f"sum by ({m.TYPE}) (increase({selector(m.TRADE_EVENTS.series, target)}[1h]))",
                legend="{{type}}",
                instant=True,
            )
        )
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .unit("none")
        .decimals(0)
    )
    events_hour = coloured(events_hour, EVENT_COLOURS)
    available = _big(
        stat.Panel()
        .title("Trade events detected")
        .description(
            "Whether the source serves positions and deals, so trade events are detected (the seed's bridge "
            "does not; the positions poller may be off). MT5AccountPositionsStale only fires while it does."
        )
        .with_target(
            prom(f"min({selector(m.TRADE_EVENTS_AVAILABLE.series, target)})", legend="detected", instant=True)
        )
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(text="NO", color="orange", index=0),
                        "1": model.ValueMappingResult(text="YES", color="green", index=1),
                    }
                )
            ]
        )
        .thresholds(threshold_steps((None, "orange"), (1, "green")))
    )
    oldest_poll = _big(
        stat.Panel()
        .title("Oldest positions poll")
        .description(
            "Age of the stalest account's last successful positions poll; red from "
            f"{POSITIONS_STALE_SECONDS} s, where MT5AccountPositionsStale fires."
        )
        .with_target(prom(f"max({_poll_age(acc)})", legend="oldest", instant=True))
        .unit("s")
        .decimals(1)
        .thresholds(_stale_steps())
    )
    per_minute = (
        timeseries.Panel()
        .title("Trade events by type (per minute)")
        .description("Trade events stored per minute, by type, over every account of the agent.")
        .with_target(
            prom(
                f"60 * sum by ({m.TYPE}) (rate({selector(m.TRADE_EVENTS.series, target)}[$__rate_interval]))",
                legend="{{type}}",
            )
        )
        .unit("none")
        .decimals(1)
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    per_minute = coloured(per_minute, EVENT_COLOURS)
    delay = (
        quantile_panel(
            "Trade event detection delay",
            selector(m.TRADE_EVENT_DETECTION_DELAY.bucket, target),
            m.TRADE_EVENT_DETECTION_DELAY.labels,
            DETECTION_QUANTILES,
        )
        .description(
            "From the terminal's change to the stored event (events caught up at start excluded). Dashed "
            f"line: the {DETECTION_LIMIT_SECONDS:g} s the design aims below at 1 s polling; absent while "
            "no event was detected in the window."
        )
        .thresholds(threshold_steps((None, "green"), (DETECTION_LIMIT_SECONDS, "red")))
        .thresholds_style(DASHED)
    )
    failures = (
        timeseries.Panel()
        .title("Positions poll failures by reason (per minute)")
        .description(
            "Failed positions polls of one account, per minute, by reason (no account label: the agent's "
            "log names the account). Empty while every poll succeeds."
        )
        .with_target(
            prom(
                f"60 * sum by ({m.REASON}) "
                f"(rate({selector(m.POSITIONS_POLL_FAILURES.series, target)}[$__rate_interval])) > 0",
                legend="{{reason}}",
            )
        )
        .unit("none")
        .decimals(1)
        .min(0)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )
    duration = quantile_panel(
        "Positions poll round duration",
        selector(m.POSITIONS_POLL_DURATION.bucket, target),
        m.POSITIONS_POLL_DURATION.labels,
        POLL_QUANTILES,
    ).description(
        "One round polls every account of the source; rounds longer than MT5_AGENT_POSITIONS_INTERVAL "
        "(1 s by default) mean the terminals cannot keep up."
    )
    return [
        (open_total, 0, 0, 6, 4),
        (events_hour, 6, 0, 6, 4),
        (available, 12, 0, 6, 4),
        (oldest_poll, 18, 0, 6, 4),
        (_open_positions_panel("Open positions by account", acc, stacked=True), 0, 4, 12, 8),
        (per_minute, 12, 4, 12, 8),
        (delay, 0, 12, 12, 8),
        (_poll_age_panel("Positions poll age by account", acc), 12, 12, 12, 8),
        (failures, 0, 20, 12, 8),
        (duration, 12, 20, 12, 8),
    ]


def account_cells(acc: str) -> list[Cell]:
    """One account: its open positions and the age of its last positions poll, now and over time."""
    open_now = _big(
        stat.Panel()
        .title("Open positions")
        .description("Open positions at the account's last successful positions poll.")
        .with_target(
            prom(f"max({selector(m.ACCOUNT_OPEN_POSITIONS.series, acc)})", legend="open", instant=True)
        )
        .unit("none")
        .decimals(0)
    ).color_mode(common.BigValueColorMode.NONE)
    poll_now = _big(
        stat.Panel()
        .title("Positions poll age")
        .description(
            f"Seconds since the account's last successful positions poll; red from {POSITIONS_STALE_SECONDS} "
            "s, where MT5AccountPositionsStale fires."
        )
        .with_target(prom(f"max({_poll_age(acc)})", legend="age", instant=True))
        .unit("s")
        .decimals(1)
        .thresholds(_stale_steps())
    )
    return [
        (open_now, 0, 0, 4, 8),
        (_open_positions_panel("Open positions over time", acc, stacked=False), 4, 0, 8, 8),
        (poll_now, 12, 0, 4, 8),
        (_poll_age_panel("Positions poll age over time", acc), 16, 0, 8, 8),
    ]
