"""Alerting policy the rules enforce and the dashboards show: the sync objective, the failures-in-a-row
limit and where each alert's runbook lives. alerts/render.py and dashboards/render.py both import it, so
a panel's threshold line and link always match the alert they are about."""

from __future__ import annotations

import string

RUNBOOK_BASE = "https://github.com/mt5-monitor/mt5-monitor/blob/main/alerts/RUNBOOK.md"
# Runbook URL pattern: `{anchor}` is the alert's heading anchor (lower-case name), `{alertname}` its name.
RUNBOOK_URL = RUNBOOK_BASE + "#{anchor}"
SYNC_FAILURES_IN_A_ROW = 3
# An account whose positions were last polled longer ago than this has no trade events (polled every 1 s).
POSITIONS_STALE_SECONDS = 60
SUCCESS_OBJECTIVE = 0.99
ERROR_BUDGET = round(1 - SUCCESS_OBJECTIVE, 10)
SUCCESS_WINDOW = "7d"  # the dashboards' review window of the success ratio


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
