"""The `bridge` source: HTTP client (`client`), payload validation (`parse`), the Source (`source`)."""

from agent.sources.bridge.client import BridgeClient, BridgeError
from agent.sources.bridge.source import BridgeSource

__all__ = ["BridgeClient", "BridgeError", "BridgeSource"]
