"""SHIM(issue 11): moved to `agent.sources.bridge.parse`; removed by the lead."""

from agent.domain.accounts import AccountSnapshot as AccountData  # noqa: F401
from agent.sources.bridge.parse import *  # noqa: F403
from agent.sources.bridge.parse import (  # noqa: F401
    CLOCK_SKEW_TOLERANCE,
    MAX_ABS_VALUE,
    ClockSkewError,
    PayloadError,
    parse_info,
    parse_live_data,
    parse_values,
)
