"""The store: one interface per concern (base.py), a SQLite and a MongoDB backend (sqlite/, mongo/), chosen
by URL (MT5_AGENT_STORE_URL, url.py) in `open_store` (factory.py); typed errors in errors.py."""

from agent.store.base import (
    AccountStore,
    DealStore,
    EventStore,
    PositionStore,
    RunStore,
    Store,
    StoreBackend,
    SyncStateStore,
)
from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.factory import open_store
from agent.store.url import sqlite_path, store_location_problem, validate_store_url

__all__ = [
    "AccountStore",
    "DealStore",
    "EventStore",
    "PositionStore",
    "RunStore",
    "Store",
    "StoreBackend",
    "StoreConfigError",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "SyncStateStore",
    "open_store",
    "sqlite_path",
    "store_location_problem",
    "validate_store_url",
]
