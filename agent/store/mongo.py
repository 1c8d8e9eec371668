"""The MongoDB store: the seed's `mt5_accounts` collection, written with PyMongo's async client.

A sync is one unordered bulk write of `$set` (synced fields) / `$setOnInsert` (insert-only fields)
upserts, so every other field in an account document (client_id, fund_type, credentials...) is never
touched. Reads project an allow-list, so credentials never leave the server. Every driver error becomes
a StoreError with a short message that never carries the URL's credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC
from typing import Any
from urllib.parse import unquote

from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from agent.models import RECORD_FIELDS, AccountRecord, AccountSyncState, AccountUpdate, SyncRun
from agent.store._common import (
    check_account,
    check_client_id,
    check_storable,
    last_per_account,
    record_from,
    run_from_doc,
    run_to_doc,
    state_from_doc,
    state_to_doc,
)
from agent.store.base import StoreError, StoreRejected

_RECORD_PROJECTION: dict[str, Any] = {"_id": 0, **dict.fromkeys(RECORD_FIELDS, 1)}
BULK_CHUNK = 1000  # operations per bulk_write round trip
_MAX_DETAIL = 200


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


def _account_op(u: AccountUpdate) -> UpdateOne:
    """`$set` the synced fields, `$setOnInsert` the insert-only ones: nothing else is ever touched."""
    change: dict[str, Any] = {"$set": u.set_fields()}
    if insert := u.insert_fields():
        change["$setOnInsert"] = insert
    return UpdateOne({"account": u.account}, change, upsert=True)


def _state_op(st: AccountSyncState) -> ReplaceOne:
    return ReplaceOne({"account": st.account}, state_to_doc(st), upsert=True)


async def _bulk_in_chunks(coll: Any, items: Sequence[Any], make_op: Any) -> None:
    """One unordered bulk write in BULK_CHUNK-sized round trips, as one: write errors of a chunk do not
    stop the others (unordered), the first is raised once all were sent; anything else stops at once."""
    first_error: BulkWriteError | None = None
    for start in range(0, len(items), BULK_CHUNK):
        ops = [make_op(item) for item in items[start : start + BULK_CHUNK]]
        try:
            await coll.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise first_error


class MongoStore:
    """`Store` on MongoDB (or anything speaking its wire protocol)."""

    def __init__(
        self,
        url: str,
        database: str = "fidus_production",
        accounts_collection: str = "mt5_accounts",
        runs_collection: str = "mt5_sync_runs",
        state_collection: str = "mt5_sync_state",
        timeout_ms: int = 5000,
    ) -> None:
        self._url = url
        self.display_url, self._secrets = split_credentials(url)
        self.database = database
        self._names = (accounts_collection, runs_collection, state_collection)
        self._timeout_ms = timeout_ms
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._indexes_ready = False

    def __repr__(self) -> str:
        return f"MongoStore({self.display_url!r}, database={self.database!r})"

    # -- plumbing ------------------------------------------------------------------------------

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
    async def _guard(self, op: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
        """Map every driver error to StoreError. `from None`: the driver's own message is not scrubbed."""
        if self._client is None:
            raise StoreError(f"MongoDB store is not open ({op})")
        try:
            yield self._client
        # BSONError/OverflowError: a value BSON cannot encode (e.g. an integer over 64 bits): the data is
        # refused, the server is fine.
        except (BSONError, OverflowError) as exc:
            raise StoreRejected(self._describe(op, exc)) from None
        except PyMongoError as exc:
            raise StoreError(self._describe(op, exc)) from None

    def _coll(self, client: AsyncMongoClient[dict[str, Any]], index: int) -> Any:
        return client[self.database][self._names[index]]

    async def _ensure_indexes(self, op: str) -> None:
        """Created on open, or on the first write after an open that found the server down: the unique
        index is what keeps concurrent upserts from duplicating an account."""
        if self._indexes_ready:
            return
        # Default index names (account_1...): an existing production index on the same key is then a
        # no-op, where a custom name would fail with "index already exists with a different name".
        async with self._guard(op) as client:
            accounts, runs, states = (self._coll(client, i) for i in range(3))
            await accounts.create_index([("account", ASCENDING)], unique=True)
            await runs.create_index([("run_id", ASCENDING)], unique=True)
            await runs.create_index([("started_at", DESCENDING)])
            await states.create_index([("account", ASCENDING)], unique=True)
        self._indexes_ready = True

    # -- Store ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connects and creates indexes. When the server is down it raises StoreError but keeps the
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
                raise StoreError(self._describe("open", exc)) from None
        await self._ensure_indexes("open")

    async def close(self) -> None:
        client, self._client = self._client, None
        self._indexes_ready = False
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        async with self._guard("ping") as client:
            await client.admin.command("ping")

    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        updates, states = last_per_account(updates), last_per_account(states)
        if not updates and not states:
            await self.ping()  # nothing to write, but a down store must still say so
            return
        check_storable(updates, states)  # before any chunk is sent: refused means nothing written
        await self._ensure_indexes("write_cycle")
        async with self._guard("write_cycle") as client:
            # Unordered (any op may apply whatever another does), in chunks: each chunk is one round
            # trip that must finish within socketTimeoutMS, and 10,000 upserts in one may not; each
            # chunk's operations are built just before it is sent, so the event loop is never held
            # for the whole cycle's worth.
            await _bulk_in_chunks(self._coll(client, 0), updates, _account_op)
            await _bulk_in_chunks(self._coll(client, 2), states, _state_op)

    async def record_run(self, run: SyncRun) -> None:
        await self._ensure_indexes("record_run")
        async with self._guard("record_run") as client:
            await self._coll(client, 1).replace_one({"run_id": run.run_id}, run_to_doc(run), upsert=True)

    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        if limit == 0:  # Mongo reads limit 0 as "no limit"
            return []
        async with self._guard("list_runs") as client:
            cursor = (
                self._coll(client, 1)
                .find({}, {"_id": 0})
                .sort([("started_at", DESCENDING), ("_id", DESCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return [run_from_doc(doc) async for doc in cursor]

    async def count_runs(self) -> int:
        async with self._guard("count_runs") as client:
            return await self._coll(client, 1).count_documents({})

    async def _records(self, op: str, query: Mapping[str, Any]) -> list[AccountRecord]:
        async with self._guard(op) as client:
            cursor = self._coll(client, 0).find(query, _RECORD_PROJECTION).sort("account", ASCENDING)
            return [record_from(doc["account"], doc) async for doc in cursor]

    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        return await self._records("get_accounts", {} if client_id is None else {"client_id": client_id})

    async def get_account(self, account: int) -> AccountRecord | None:
        records = await self._records("get_account", {"account": account})
        return records[0] if records else None

    async def get_sync_states(self) -> dict[int, AccountSyncState]:
        async with self._guard("get_sync_states") as client:
            cursor = self._coll(client, 2).find({}, {"_id": 0})
            return {int(doc["account"]): state_from_doc(doc) async for doc in cursor}

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        ops = []
        for doc in docs:
            account = doc.get("account")
            if not isinstance(account, int) or isinstance(account, bool):
                raise ValueError(f"account document needs an integer 'account', got {account!r}")
            ops.append(
                ReplaceOne({"account": account}, {k: v for k, v in doc.items() if k != "_id"}, upsert=True)
            )
        if not ops:
            return
        await self._ensure_indexes("put_account_documents")
        async with self._guard("put_account_documents") as client:
            await self._coll(client, 0).bulk_write(ops, ordered=True)

    async def set_client(self, account: int, client_id: str | None) -> None:
        check_account(account)
        check_client_id(client_id)
        await self._ensure_indexes("set_client")
        async with self._guard("set_client") as client:
            accounts = self._coll(client, 0)
            if client_id is None:
                await accounts.update_one({"account": account}, {"$unset": {"client_id": ""}})
            else:
                # Upsert: a never-synced account gets a document of account and client_id only.
                change = {"$set": {"client_id": client_id}}
                await accounts.update_one({"account": account}, change, upsert=True)
