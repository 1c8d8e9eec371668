"""The `metaapi` source kind: MT5 accounts through the MetaAPI cloud's streaming API
(`metaapi-cloud-sdk`, optional extra `metaapi`, imported only when a source is built). docs/metaapi.md."""

from agent.sources.metaapi.settings import Bounds, MetaApiConfigError, MetaApiSettings, load_settings
from agent.sources.metaapi.source import MetaApiSource
from agent.sources.metaapi.stream import PROBLEMS, ConnectionState

__all__ = [
    "PROBLEMS",
    "Bounds",
    "ConnectionState",
    "MetaApiConfigError",
    "MetaApiSettings",
    "MetaApiSource",
    "load_settings",
]
