"""The store URL (MT5_AGENT_STORE_URL): which backend it names, and whether it can work.

`validate_store_url` is the start-up check: the URL must parse (MongoDB URLs with pymongo's own parser, so
the driver cannot refuse them later with a traceback), and its messages never carry the URL's credentials.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote

from agent.store.errors import StoreConfigError

__all__ = [
    "MONGO_ONLY_OPTIONS",
    "is_mongo_url",
    "sqlite_path",
    "store_location_problem",
    "validate_store_url",
]

_SQLITE_PREFIX = "sqlite:///"
_MEMORY = ":memory:"
_MONGO_SCHEMES = ("mongodb", "mongodb+srv")
# Mongo-only options a caller may pass whatever the URL; meaningless for a SQLite file.
MONGO_ONLY_OPTIONS = frozenset({"accounts_collection", "runs_collection", "state_collection"})
_MAX_DETAIL = 200
# URL options whose values are secrets (tlsCertificateKeyFilePassword, authMechanismProperties=...TOKEN:...).
_SECRET_OPTION_WORDS = ("password", "secret", "token", "authmechanismproperties")


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower() if "://" in url else ""


def is_mongo_url(url: str) -> bool:
    return _scheme(url) in _MONGO_SCHEMES


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
        raise StoreConfigError(f"not a valid MongoDB URL: {_scrub(detail, url)}") from None


def validate_store_url(url: str) -> None:
    """Raise StoreConfigError, a ValueError (one line, credentials never echoed), unless `open_store` can
    build this URL."""
    scheme = _scheme(url)
    if scheme in _MONGO_SCHEMES:
        _validate_mongo_url(url)
        return
    if scheme == "sqlite":
        if sqlite_path(url) is None:
            raise StoreConfigError(
                "a SQLite URL needs a path: sqlite:///relative/path or sqlite:////abs/path"
            )
        return
    # Only the scheme is echoed: the rest of the URL may hold credentials.
    raise StoreConfigError(
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
