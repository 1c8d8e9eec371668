"""The "Risk" rows (DESIGN.md 12): margin level against the alert thresholds, largest open loss, net
exposure per symbol and equity drawdowns, on the overview (the accounts selected) and on the per-account
dashboard (one account).

The margin level's colours and dashed lines are MT5AccountMarginLevelLow's thresholds (the `RiskLevels`
the rules are rendered with: red below the page level, orange below the margin call), the drawdown's are
MT5AccountDrawdownHigh's limits. Money (largest open loss) is in each account's own currency: the queries
join the currency from mt5_account_info and keep $currency's accounts only (`joined`, render.py's).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from agent.telemetry import catalog as m
from agent.telemetry.alerting import RiskLevels, drawdown_expr
from agent.telemetry.promql import selector

with warnings.catch_warnings():  # the v1 Dashboard builder warns at import; v1 JSON is what we provision
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.models import common

from dashboards.panels import DASHED, prom, threshold_steps
from dashboards.trades import Cell

ROW_TITLE = "Risk"
Joined = Callable[[m.Family, str], str]  # (family, selector) -> per account, with its currency label
_DAY, _TRACKING = m.DRAWDOWN_PERIODS


def row() -> dash.Row:
    return dash.Row(ROW_TITLE).collapsed(False)


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _margin_steps(risk: RiskLevels) -> dash.ThresholdsConfig:
    return threshold_steps((None, "red"), (risk.critical_level, "orange"), (risk.margin_call, "green"))


def _drawdown_steps(limit: float) -> dash.ThresholdsConfig:
    return threshold_steps((None, "green"), (limit, "red"))


def _margin_text(risk: RiskLevels) -> str:
    return (
        "Margin level (equity / used margin) at the last sync; absent while no margin is used. Dashed "
        f"lines: MT5AccountMarginLevelLow opens a ticket below {_pct(risk.margin_call)} (the margin call "
        f"level) and pages below {_pct(risk.critical_level)} (stop-out at {_pct(risk.stop_out)})."
    )


_BROKER_TEXT = (
    " Broker margin call / stop-out: the levels the account's terminal reports; where it reports them, "
    "the alert compares with those instead (the page at stop-out x the same headroom)."
)


def _drawdown_text(risk: RiskLevels) -> str:
    return (
        "Equity below its peak, 1 - equity / peak: of the UTC day (day) and since the agent started "
        "tracking (tracking). "
        f"MT5AccountDrawdownHigh fires above {_pct(risk.drawdown_day)} (day) or "
        f"{_pct(risk.drawdown_tracking)} (tracking); the dashed line is the day's limit."
    )


def _margin_panel(title: str, sel: str, risk: RiskLevels, *, broker: bool = False) -> timeseries.Panel:
    """`broker`: with the broker's levels as the terminal reports them (one account's panel: on the
    overview they would triple the lines)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(_margin_text(risk) + (_BROKER_TEXT if broker else ""))
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_MARGIN_LEVEL_RATIO.series, sel)})",
                legend="{{account}}",
            )
        )
    )
    if broker:
        levels = ((m.ACCOUNT_MARGIN_CALL_LEVEL, "margin call"), (m.ACCOUNT_STOP_OUT_LEVEL, "stop-out"))
        for family, what in levels:
            panel = panel.with_target(
                prom(
                    f"max by ({m.ACCOUNT}) ({selector(family.series, sel)})",
                    legend=f"{{{{account}}}} broker {what}",
                )
            )
    return (
        panel.unit("percentunit")
        .min(0)
        .thresholds(_margin_steps(risk))
        .thresholds_style(DASHED)
        .line_width(2)
    )


def loss_panel(title: str, sel: str, joined: Joined) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(f"{title} (${{currency}})")
        .description(
            "Loss of the worst open position (profit + swap, as a positive amount) at the last positions "
            "poll, in ${currency}; 0 when no position is losing."
        )
        .with_target(prom(joined(m.ACCOUNT_LARGEST_OPEN_LOSS, sel), legend="{{account}} {{currency}}"))
        .unit("none")
        .decimals(2)
        .min(0)
        .line_width(2)
    )


def _exposure_panel(title: str, sel: str, by: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(
            f"Net open lots (buy minus sell) per symbol at the last positions poll. At most "
            f"{m.RISK_SYMBOLS_PER_ACCOUNT} symbols per account (largest first); the others are summed as "
            "'other'."
        )
        .with_target(
            prom(f"sum by ({by}) ({selector(m.ACCOUNT_NET_EXPOSURE.series, sel)})", legend=_legend(by))
        )
        .unit("none")
        .decimals(2)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .line_width(2)
    )


def _flat(expr: str) -> str:
    """A multi-line expression on one line (a panel's query)."""
    return " ".join(expr.split("\n"))


def _legend(by: str) -> str:
    return " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))


def _drawdown_panel(title: str, sel: str, risk: RiskLevels) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(_drawdown_text(risk))
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}, {m.PERIOD}) ({_flat(drawdown_expr(sel))})",
                legend=f"{{{{{m.ACCOUNT}}}}} {{{{{m.PERIOD}}}}}",
            )
        )
        .unit("percentunit")
        .min(0)
        .thresholds(_drawdown_steps(risk.drawdown_day))
        .thresholds_style(DASHED)
        .line_width(2)
    )


def _correlation_panel(title: str, sel: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(
            "Highest direction-adjusted correlation of two open symbols (Pearson correlation of the log "
            "returns of their last 100 M5 bars, times the signs of their net lots: positive, the risks add "
            "up; negative, a hedge), refreshed every 60 s; and the net lots of the symbols moving with "
            "another open one (0.5 or more). Absent with fewer than two symbols open."
        )
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_POSITION_CORRELATION.series, sel)})",
                legend="{{account}} max correlation",
            )
        )
        .with_target(
            prom(
                f"max by ({m.ACCOUNT}) ({selector(m.ACCOUNT_CORRELATED_EXPOSURE.series, sel)})",
                legend="{{account}} correlated lots",
            )
        )
        .unit("none")
        .decimals(2)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .line_width(2)
    )


def overview_cells(acc: str, risk: RiskLevels, joined: Joined) -> list[Cell]:
    """The accounts selected: margin level, largest open loss, exposure per account and symbol, drawdowns."""
    return [
        (_margin_panel("Margin level by account", acc, risk), 0, 0, 12, 8),
        (loss_panel("Largest open loss by account", acc, joined), 12, 0, 12, 8),
        (
            _exposure_panel("Net exposure by account and symbol (lots)", acc, f"{m.ACCOUNT}, {m.SYMBOL}"),
            0,
            8,
            12,
            8,
        ),
        (_drawdown_panel("Equity drawdown by account", acc, risk), 12, 8, 12, 8),
        (_correlation_panel("Correlated open positions by account", acc), 0, 16, 24, 8),
    ]


def _now(title: str, expr: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .with_target(prom(expr, legend=title, instant=True))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
    )


def account_cells(acc: str, risk: RiskLevels) -> list[Cell]:
    """One account: its risk now (stats coloured by the alert thresholds) and over time (its largest open
    loss over time sits beside its floating profit, higher up: `loss_panel`)."""
    margin_now = (
        _now("Margin level", f"max({selector(m.ACCOUNT_MARGIN_LEVEL_RATIO.series, acc)})", _margin_text(risk))
        .unit("percentunit")
        .decimals(0)
        .thresholds(_margin_steps(risk))
    )
    loss_now = (
        _now(
            "Largest open loss (${currency})",
            f"max({selector(m.ACCOUNT_LARGEST_OPEN_LOSS.series, acc)})",
            "Loss of the worst open position (profit + swap) at the last positions poll.",
        )
        .unit("none")
        .decimals(2)
        .color_mode(common.BigValueColorMode.NONE)
    )
    day_now = (
        _now(
            "Drawdown today",
            f"max({_flat(drawdown_expr(acc, _DAY))})",
            _drawdown_text(risk),
        )
        .unit("percentunit")
        .decimals(1)
        .thresholds(_drawdown_steps(risk.drawdown_day))
    )
    tracking_now = (
        _now(
            "Drawdown since tracking started",
            f"max({_flat(drawdown_expr(acc, _TRACKING))})",
            _drawdown_text(risk),
        )
        .unit("percentunit")
        .decimals(1)
        .thresholds(_drawdown_steps(risk.drawdown_tracking))
    )
    return [
        (margin_now, 0, 0, 6, 4),
        (loss_now, 6, 0, 6, 4),
        (day_now, 12, 0, 6, 4),
        (tracking_now, 18, 0, 6, 4),
        (_margin_panel("Margin level over time", acc, risk, broker=True), 0, 4, 12, 8),
        (_exposure_panel("Net exposure by symbol (lots)", acc, m.SYMBOL), 12, 4, 12, 8),
        (_drawdown_panel("Equity drawdown over time", acc, risk), 0, 12, 12, 8),
        (_correlation_panel("Correlated open positions", acc), 12, 12, 12, 8),
    ]
