"""SHIM(issue 11): moved to `agent.sync.scheduler`; removed by the lead."""

from agent.sync.scheduler import *  # noqa: F403
from agent.sync.scheduler import SyncScheduler  # noqa: F401
