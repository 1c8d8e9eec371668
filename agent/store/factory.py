"""Building the store a URL names: SQLite, the embedded default, or MongoDB."""

from __future__ import annotations

from typing import Any

from agent.store.base import Store
from agent.store.errors import StoreConfigError
from agent.store.url import MONGO_ONLY_OPTIONS, is_mongo_url, sqlite_path, validate_store_url


def open_store(url: str, *, mongo_database: str = "fidus_production", **kw: Any) -> Store:
    """Build (not open: the caller awaits `.open()`) the store a URL names.

    `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`; `mongodb://...` or
    `mongodb+srv://...` (database `mongo_database`). `kw` goes to the store (e.g. `timeout_ms`).
    StoreConfigError (a ValueError) naming MT5_AGENT_STORE_URL when the URL cannot work.
    """
    try:
        validate_store_url(url)
    except ValueError as exc:
        raise StoreConfigError(f"MT5_AGENT_STORE_URL: {exc}") from None
    if is_mongo_url(url):
        from agent.store.mongo import MongoStore

        return MongoStore(url, database=mongo_database, **kw)
    from agent.store.sqlite import SQLiteStore

    path = sqlite_path(url)
    assert path is not None  # validated above
    return SQLiteStore(path, **{k: v for k, v in kw.items() if k not in MONGO_ONLY_OPTIONS})
