"""SHIM(issue 11): moved to `agent.sources.bridge.client`; removed by the lead."""

from agent.sources.base import AccountListing as Listing  # noqa: F401
from agent.sources.base import ListedAccount as AccountSummary  # noqa: F401
from agent.sources.base import SourceHealth as BridgeHealth  # noqa: F401
from agent.sources.bridge.client import *  # noqa: F403
from agent.sources.bridge.client import (  # noqa: F401
    MAX_RESPONSE_BYTES,
    BatchResult,
    BridgeClient,
    BridgeError,
    ResponseTooLarge,
    parse_info,
    read_capped,
)
