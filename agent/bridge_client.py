"""SHIM(issue 11): moved to `agent.sources.bridge.client`; removed by the lead."""

from agent.sources.bridge.client import *  # noqa: F403
from agent.sources.bridge.client import (  # noqa: F401
    MAX_RESPONSE_BYTES,
    AccountSummary,
    BatchResult,
    BridgeClient,
    BridgeError,
    BridgeHealth,
    Listing,
    ResponseTooLarge,
    parse_info,
    read_capped,
)
