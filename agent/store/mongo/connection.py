"""The MongoDB store's client: one `AsyncMongoClient` on one database, the indexes every concern declares,
and the mapping of every driver error to a typed StoreError with a short message that never carries the
URL's credentials."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any
from urllib.parse import unquote

from bson.errors import BSONError
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.observe import OperationObserver

_MAX_DETAIL = 200

Document = dict[str, Any]


def split_credentials(url: str) -> tuple[str, list[str]]:
    """(the URL without user info, the secrets to scrub from any message). Parsed by hand: pymongo's
    parser resolves mongodb+srv names over DNS, and urlsplit rejects multi-host URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<invalid url>", []
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, hostlist = hosts.rpartition("@")
    if not at:
        return f"{scheme}://{hosts}/", []
    secrets = [s for part in userinfo.split(":", 1) for s in {part, unquote(part)} if len(s) >= 3]
    return f"{scheme}://{hostlist}/", secrets


def _error_type(exc: Exception) -> type[StoreError]:
    if isinstance(exc, (BSONError, OverflowError)):
        # A value BSON cannot encode (e.g. an integer over 64 bits): the data is refused, the server is fine.
        return StoreRejected
    if isinstance(exc, ConnectionFailure) or getattr(exc, "timeout", False):
        return StoreUnavailable  # unreachable, or no answer in time
    if isinstance(exc, ConfigurationError):
        return StoreConfigError
    return StoreError  # the server answered and refused (auth, a validator, a duplicate key...)


class MongoConnection:
    """The client of one MongoDB database (or anything speaking its wire protocol)."""

    def __init__(self, url: str, database: str, timeout_ms: int = 5000) -> None:
        self._url = url
        self.display_url, self._secrets = split_credentials(url)
        self.database = database
        self._timeout_ms = timeout_ms
        self._client: AsyncMongoClient[Document] | None = None
        # (collection, keys, unique), created in this order; declared by each concern's store.
        self._indexes: list[tuple[str, list[tuple[str, int]], bool]] = []
        self._indexes_ready = False
        self.observe: OperationObserver | None = None  # see agent.store.observe

    def declare_index(
        self, collection: str, keys: Sequence[tuple[str, int]], *, unique: bool = False
    ) -> None:
        self._indexes.append((collection, list(keys), unique))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _describe(self, op: str, exc: Exception) -> str:
        if isinstance(exc, BulkWriteError):
            errors = exc.details.get("writeErrors") or []
            first = errors[0].get("errmsg", "") if errors else str(exc.details.get("writeConcernErrors", ""))
            detail = f"{len(errors)} write error(s), first: {first}"
        elif isinstance(exc, OperationFailure):
            errmsg = (exc.details or {}).get("errmsg") or str(exc).split(", full error:")[0]
            detail = f"{errmsg} (code {exc.code})"
        else:
            # The server-selection message ends in a long topology dump: keep the useful head only.
            detail = str(exc).split(", Timeout:")[0].split(" Topology Description:")[0]
        detail = self._scrub(detail.splitlines()[0] if detail else "")
        if len(detail) > _MAX_DETAIL:
            detail = detail[:_MAX_DETAIL] + "..."
        return f"MongoDB {op} failed ({type(exc).__name__}): {detail}"

    @asynccontextmanager
    async def guard(self, op: str) -> AsyncIterator[AsyncMongoClient[Document]]:
        """Map every driver error to a typed StoreError. `from None`: the driver's own message is not
        scrubbed."""
        if self._client is None:
            raise StoreUnavailable(f"MongoDB store is not open ({op})")
        try:
            yield self._client
        except (BSONError, OverflowError, PyMongoError) as exc:
            raise _error_type(exc)(self._describe(op, exc)) from None

    def collection(self, client: AsyncMongoClient[Document], name: str) -> AsyncCollection[Document]:
        return client[self.database][name]

    async def ensure_indexes(self, op: str) -> None:
        """Created on open, or on the first write after an open that found the server down: the unique
        indexes are what keep concurrent upserts from duplicating an account."""
        if self._indexes_ready:
            return
        # Default index names (account_1...): an existing production index on the same key is then a
        # no-op, where a custom name would fail with "index already exists with a different name".
        async with self.guard(op) as client:
            for name, keys, unique in self._indexes:
                coll = self.collection(client, name)
                if unique:
                    await coll.create_index(keys, unique=True)
                else:
                    await coll.create_index(keys)
        self._indexes_ready = True

    async def open(self) -> None:
        """Connects and creates indexes. When the server is down it raises StoreUnavailable but keeps the
        client, so later calls recover by themselves once the server is back."""
        if self._client is None:
            t = self._timeout_ms
            try:
                self._client = AsyncMongoClient(
                    self._url,
                    serverSelectionTimeoutMS=t,
                    connectTimeoutMS=t,
                    socketTimeoutMS=t,
                    tz_aware=True,
                    tzinfo=UTC,
                    appname="mt5-monitor",
                )
            except PyMongoError as exc:
                raise _error_type(exc)(self._describe("open", exc)) from None
        await self.ensure_indexes("open")

    async def close(self) -> None:
        client, self._client = self._client, None
        self._indexes_ready = False
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        async with self.guard("ping") as client:
            await client.admin.command("ping")
