"""SHIM(issue 11): moved to `agent.sync.probe`; removed by the lead."""

from agent.sync.probe import *  # noqa: F403
from agent.sync.probe import BridgeProber, SourceProber  # noqa: F401
