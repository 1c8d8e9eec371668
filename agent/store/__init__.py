"""Store selection by URL (MT5_AGENT_STORE_URL): SQLite, the embedded default, or MongoDB."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from agent.store.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store"]

_SQLITE_PREFIX = "sqlite:///"
# Mongo-only options a caller may pass whatever the URL; meaningless for a SQLite file.
_MONGO_ONLY = frozenset({"accounts_collection", "runs_collection", "state_collection"})


def open_store(url: str, *, mongo_database: str = "fidus_production", **kw: Any) -> Store:
    """Build (not open: the caller awaits `.open()`) the store a URL names.

    `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`; `mongodb://...` or
    `mongodb+srv://...` (database `mongo_database`). `kw` goes to the store (e.g. `timeout_ms`).
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in ("mongodb", "mongodb+srv"):
        from agent.store.mongo import MongoStore

        return MongoStore(url, database=mongo_database, **kw)
    if scheme == "sqlite":
        path = unquote(url[len(_SQLITE_PREFIX) :]) if url.lower().startswith(_SQLITE_PREFIX) else ""
        if not path:
            raise ValueError(
                "MT5_AGENT_STORE_URL: a SQLite URL needs a path: sqlite:///relative/path or sqlite:////abs/path"
            )
        from agent.store.sqlite import SQLiteStore

        return SQLiteStore(path, **{k: v for k, v in kw.items() if k not in _MONGO_ONLY})
    # Only the scheme is echoed: the rest of the URL may hold credentials.
    raise ValueError(
        f"MT5_AGENT_STORE_URL must start with sqlite:///, mongodb:// or mongodb+srv://, "
        f"got {(scheme + '://') if scheme else 'no scheme'}"
    )
