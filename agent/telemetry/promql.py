"""PromQL pieces alerts/render.py and dashboards/render.py share: the job selector (checked), series
selectors, and the sync success ratio the dashboards show and the burn-rate alerts watch."""

from __future__ import annotations

import re

from agent.domain.runs import RunResult
from agent.telemetry.alerting import SUCCESS_WINDOW
from agent.telemetry.catalog import JOB_SELECTOR, RESULT, SYNC_RUNS

_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\\n]|\\.)*"\s*'
_SELECTOR = re.compile(rf"^{_MATCHER}(?:,{_MATCHER})*$")


def equals(label: str, value: str) -> str:
    """The matcher `label="value"` (values from the catalog's closed sets need no escaping)."""
    return f'{label}="{value}"'


SUCCESS = equals(RESULT, RunResult.SUCCESS)
NOT_SUCCESS = f'{RESULT}!="{RunResult.SUCCESS}"'


def check_job_selector(selector: str) -> str:
    """The selector without surrounding blanks; ValueError unless it is one or more PromQL label matchers
    (`job="mt5-agent"`, `job=~"mt5-agent-.+", env="prod"`). Empty is refused: `up` alone would make
    MT5AgentDown fire for every target of the Prometheus."""
    cleaned = selector.strip()
    if not _SELECTOR.match(cleaned):
        raise ValueError(f'job selector must be PromQL label matchers like job="mt5-agent", got {selector!r}')
    return cleaned


def selector(metric: str, job_selector: str, *matchers: str) -> str:
    """`metric{<job selector>, <matchers>}`."""
    inner = ", ".join(m for m in (job_selector, *matchers) if m)
    return f"{metric}{{{inner}}}"


def success_ratio_expr(window: str = SUCCESS_WINDOW, job_selector: str = JOB_SELECTOR) -> str:
    """Share of all sync runs that succeeded over `window`, over every agent (absent when there were none)."""
    runs = SYNC_RUNS.series
    good = f"sum(increase({selector(runs, job_selector, SUCCESS)}[{window}]))"
    return f"({good} or vector(0))\n/\nsum(increase({selector(runs, job_selector)}[{window}]))"
