"""Alerting policy the rules enforce and the dashboards show: the sync objective, the failures-in-a-row
limit, the risk alerts' levels and where each alert's runbook lives. alerts/render.py and
dashboards/render.py both import it, so a panel's threshold line and link always match the alert they are
about."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from agent.telemetry import catalog as m

RUNBOOK_BASE = "https://github.com/mt5-monitor/mt5-monitor/blob/main/alerts/RUNBOOK.md"
# Runbook URL pattern: `{anchor}` is the alert's heading anchor (lower-case name), `{alertname}` its name.
RUNBOOK_URL = RUNBOOK_BASE + "#{anchor}"
SYNC_FAILURES_IN_A_ROW = 3
# An account whose positions were last polled longer ago than this has no trade events (polled every 1 s).
POSITIONS_STALE_SECONDS = 60
SUCCESS_OBJECTIVE = 0.99
ERROR_BUDGET = round(1 - SUCCESS_OBJECTIVE, 10)
SUCCESS_WINDOW = "7d"  # the dashboards' review window of the success ratio
_DURATION = re.compile(r"^(?:\d+(?:y|w|d|h|m|s|ms))+$")


@dataclass(frozen=True)
class RiskLevels:
    """Thresholds of the risk alerts (render options), as ratios: MT5's margin levels are percent / 100.

    MT5AccountMarginLevelLow compares an account's margin level with its broker's margin call and stop-out
    levels where its terminal reports them (MT5's margin_so_call / margin_so_so in percent mode, exported
    as mt5_account_margin_call_level_ratio and mt5_account_margin_stop_out_level_ratio), and with
    `margin_call` and `stop_out` here otherwise (a bridge that does not report them, the seed's; a broker
    in money mode): set these to your brokers' usual levels. It opens a ticket at the margin call level
    and pages at stop-out * (1 + stop_out_headroom), before the broker starts closing positions.
    MT5AccountDrawdownHigh compares the equity drawdown of the UTC day and since the agent started
    tracking with `drawdown_day` and `drawdown_tracking`."""

    margin_call: float = 1.0
    stop_out: float = 0.5
    stop_out_headroom: float = 0.2
    drawdown_day: float = 0.05
    drawdown_tracking: float = 0.2
    margin_for: str = "1m"
    drawdown_for: str = "5m"

    def __post_init__(self) -> None:
        for name in ("margin_for", "drawdown_for"):
            if not _DURATION.match(getattr(self, name)):
                raise ValueError(f"RiskLevels.{name} must be a Prometheus duration like 5m")
        if not 0 < self.stop_out < self.margin_call:
            raise ValueError("RiskLevels: need 0 < stop_out < margin_call")
        if not 0 <= self.stop_out_headroom or self.critical_level >= self.margin_call:
            raise ValueError("RiskLevels: stop_out * (1 + stop_out_headroom) must stay below margin_call")
        for name in ("drawdown_day", "drawdown_tracking"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"RiskLevels.{name} must be a ratio between 0 and 1")

    @property
    def critical_level(self) -> float:
        """The margin level ratio that pages: just above the stop-out."""
        return round(self.stop_out * (1 + self.stop_out_headroom), 10)


DEFAULT_RISK = RiskLevels()


def drawdown_expr(job_selector: str, period: str | None = None) -> str:
    """PromQL of the equity drawdown, `1 - equity / peak`, per account and `period` (one period, or both
    when None), as a ratio. Not exported by the agent (issue 17: two series per account less at every
    scrape); both series come from the same target, hence the match on job, instance and account. A peak
    that is not positive gives no drawdown (no division by zero)."""
    # (agent.telemetry.promql's `selector`, which imports this module)
    matchers = ", ".join(x for x in (job_selector, f'{m.PERIOD}="{period}"' if period else "") if x)
    peak = f"{m.ACCOUNT_EQUITY_PEAK.series}{{{matchers}}}"
    return (
        f"1 - {m.ACCOUNT_EQUITY.series}{{{job_selector}}}\n"
        f"/ on({m.JOB}, {m.INSTANCE}, {m.ACCOUNT}) group_right() ({peak} > 0)"
    )


def runbook_link(pattern: str, alertname: str) -> str:
    """The runbook URL of `alertname` from a pattern with `{anchor}` and/or `{alertname}` placeholders."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as exc:
        raise ValueError(f"runbook URL pattern {pattern!r}: {exc}") from None
    if unknown := names - {"anchor", "alertname"}:
        raise ValueError(
            f"runbook URL pattern {pattern!r}: unknown placeholder(s) {sorted(unknown)}; "
            "use {anchor} (lower-case alert name) or {alertname}"
        )
    if not pattern.strip():
        raise ValueError("runbook URL pattern must not be empty")
    return pattern.format(anchor=alertname.lower(), alertname=alertname)
