"""SHIM(issue 11): moved to `agent.domain.freshness`; removed by the lead."""

from agent.domain.freshness import *  # noqa: F403
from agent.domain.freshness import STATES, State, Thresholds, age_seconds, classify  # noqa: F401
