"""Store selection by URL (MT5_AGENT_STORE_URL): SQLite, the embedded default, or MongoDB.

`validate_store_url` is the start-up check: the URL must parse (MongoDB URLs with pymongo's own parser, so
the driver cannot refuse them later with a traceback), and its messages never carry the URL's credentials.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, unquote

from agent.store.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store", "sqlite_path", "store_location_problem", "validate_store_url"]

_SQLITE_PREFIX = "sqlite:///"
_MEMORY = ":memory:"
_MONGO_SCHEMES = ("mongodb", "mongodb+srv")
# Mongo-only options a caller may pass whatever the URL; meaningless for a SQLite file.
_MONGO_ONLY = frozenset({"accounts_collection", "runs_collection", "state_collection"})
_MAX_DETAIL = 200
# URL options whose values are secrets (tlsCertificateKeyFilePassword, authMechanismProperties=...TOKEN:...).
_SECRET_OPTION_WORDS = ("password", "secret", "token", "authmechanismproperties")


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def sqlite_path(url: str) -> str | None:
    """The file a `sqlite:///...` URL names (`:memory:` as is); None for any other URL or an empty path."""
    if not url.lower().startswith(_SQLITE_PREFIX):
        return None
    return unquote(url[len(_SQLITE_PREFIX) :]) or None


def _url_secrets(url: str) -> list[str]:
    """What in a URL may be a secret: user info and secret-bearing option values (raw and unquoted)."""
    before_query, _, query = url.partition("://")[2].partition("?")
    parts: list[str] = []
    if "@" in before_query:
        parts.extend(before_query.rpartition("@")[0].split(":", 1))
    parts.extend(v for k, v in parse_qsl(query) if any(w in k.lower() for w in _SECRET_OPTION_WORDS))
    return sorted({s for p in parts for s in (p, unquote(p)) if len(s) >= 3}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    text = (text.splitlines() or [""])[0]
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text[:_MAX_DETAIL] + ("..." if len(text) > _MAX_DETAIL else "")


def _validate_mongo_url(url: str) -> None:
    """pymongo's parser, without any I/O: `parse_uri` for mongodb:// (it resolves nothing), the shared
    validator for mongodb+srv:// (its public parse_uri would query DNS at start)."""
    from pymongo.errors import PyMongoError

    try:
        if _scheme(url) == "mongodb+srv":
            try:
                from pymongo.uri_parser_shared import _validate_uri
            except ImportError:  # another pymongo layout: the driver checks it when the store opens
                return
            _validate_uri(url)
        else:
            from pymongo.uri_parser import parse_uri

            parse_uri(url)
    except (PyMongoError, ValueError) as exc:
        detail = str(exc)
        if (
            "@" not in url.partition("://")[2].partition("?")[0]
        ):  # pymongo's hint about escaping credentials only misleads without any
            detail = detail.split(" Hint:")[0]
        raise ValueError(f"not a valid MongoDB URL: {_scrub(detail, url)}") from None


def validate_store_url(url: str) -> None:
    """Raise ValueError (one line, credentials never echoed) unless `open_store` can build this URL."""
    scheme = _scheme(url)
    if scheme in _MONGO_SCHEMES:
        _validate_mongo_url(url)
        return
    if scheme == "sqlite":
        if sqlite_path(url) is None:
            raise ValueError("a SQLite URL needs a path: sqlite:///relative/path or sqlite:////abs/path")
        return
    # Only the scheme is echoed: the rest of the URL may hold credentials.
    raise ValueError(
        "must start with sqlite:///, mongodb:// or mongodb+srv://, "
        f"got {(scheme + '://') if scheme else 'no scheme'}"
    )


def store_location_problem(url: str) -> str | None:
    """What stops a SQLite store from being created where the URL says (checked at start, so the
    operator reads the setting's name instead of a later "store unavailable"); None if nothing does."""
    path = sqlite_path(url)
    if path is None or path == _MEMORY:
        return None
    full = os.path.abspath(path)
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        return f"directory {parent} does not exist (SQLite file {full})"
    if os.path.isdir(full):
        return f"{full} is a directory, not a SQLite file"
    if not os.path.exists(full) and not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable (SQLite file {full})"
    return None


def open_store(url: str, *, mongo_database: str = "fidus_production", **kw: Any) -> Store:
    """Build (not open: the caller awaits `.open()`) the store a URL names.

    `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite:///:memory:`; `mongodb://...` or
    `mongodb+srv://...` (database `mongo_database`). `kw` goes to the store (e.g. `timeout_ms`).
    """
    try:
        validate_store_url(url)
    except ValueError as exc:
        raise ValueError(f"MT5_AGENT_STORE_URL: {exc}") from None
    if _scheme(url) in _MONGO_SCHEMES:
        from agent.store.mongo import MongoStore

        return MongoStore(url, database=mongo_database, **kw)
    from agent.store.sqlite import SQLiteStore

    path = sqlite_path(url)
    assert path is not None  # validated above
    return SQLiteStore(path, **{k: v for k, v in kw.items() if k not in _MONGO_ONLY})
