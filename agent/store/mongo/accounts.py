"""`mt5_accounts` in MongoDB, the seed's collection: a sync `$set`s the synced fields and `$setOnInsert`s
the insert-only ones, so every other field of a document (client_id, fund_type, credentials...) is never
touched; reads project an allow-list, so credentials never leave the server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, ReplaceOne, UpdateOne

from agent.domain.accounts import (
    INSERT_ONLY_FIELDS,
    RECORD_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountUpdate,
)
from agent.store.checks import check_account, check_client_id, check_storable
from agent.store.codec import SOURCE_FIELD, last_per_account, record_from, source_items, valid_source
from agent.store.mongo.bulk import bulk_in_chunks
from agent.store.mongo.connection import Document, MongoConnection
from agent.store.observe import operation

_RECORD_PROJECTION: dict[str, Any] = {"_id": 0, **dict.fromkeys(RECORD_FIELDS, 1)}


def update_op(u: AccountUpdate) -> UpdateOne:
    """`$set` the synced fields, `$setOnInsert` the insert-only ones: nothing else is ever touched. The
    same documents, key order included, as `u.set_fields()` and `u.insert_fields()`
    (tests/store/test_mongo_encoding.py), built without their intermediate dicts and calls: it runs for
    every account of every cycle."""
    values = u.values
    fields = {key: value for key in VALUE_FIELDS if (value := getattr(values, key)) is not None}
    fields["updated_at"] = synced = u.synced_at
    fields["synced_from_vps"] = True
    fields["vps_sync_timestamp"] = synced
    fields["data_source"] = u.data_source.value
    if u.live_data_at is not None:
        fields["live_data_at"] = u.live_data_at
    change: dict[str, Any] = {"$set": fields}
    insert = {key: value for key in INSERT_ONLY_FIELDS if (value := getattr(u, key)) is not None}
    if insert:
        change["$setOnInsert"] = insert
    return UpdateOne({"account": u.account}, change, upsert=True)


class MongoAccounts:
    """`AccountStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str) -> None:
        self._db = db
        self.collection = collection
        # The unique index is what keeps concurrent upserts from duplicating an account.
        db.declare_index(collection, [("account", ASCENDING)], unique=True)

    async def _records(self, op: str, query: Mapping[str, Any]) -> list[AccountRecord]:
        async with self._db.guard(op) as client:
            coll = self._db.collection(client, self.collection)
            cursor = coll.find(query, _RECORD_PROJECTION).sort("account", ASCENDING)
            return [record_from(doc["account"], doc) async for doc in cursor]

    @operation("get_accounts")
    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        return await self._records("get_accounts", {} if client_id is None else {"client_id": client_id})

    @operation("get_account")
    async def get_account(self, account: int) -> AccountRecord | None:
        records = await self._records("get_account", {"account": account})
        return records[0] if records else None

    @operation("write_updates")
    async def write_updates(self, updates: Sequence[AccountUpdate]) -> None:
        updates = last_per_account(updates)
        if not updates:
            return
        check_storable(updates, ())  # before any chunk is sent: refused means nothing written
        await self._db.ensure_indexes("write_updates")
        async with self._db.guard("write_updates") as client:
            await self.write_in(client, updates)

    async def write_in(self, client: AsyncMongoClient[Document], updates: Sequence[AccountUpdate]) -> None:
        """Inside the caller's guard: updates already de-duplicated and checked."""
        await bulk_in_chunks(self._db.collection(client, self.collection), updates, update_op)

    @operation("put_account_documents")
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
        await self._db.ensure_indexes("put_account_documents")
        async with self._db.guard("put_account_documents") as client:
            await self._db.collection(client, self.collection).bulk_write(ops, ordered=True)

    @operation("set_client")
    async def set_client(self, account: int, client_id: str | None) -> None:
        check_account(account)
        check_client_id(client_id)
        await self._db.ensure_indexes("set_client")
        async with self._db.guard("set_client") as client:
            accounts = self._db.collection(client, self.collection)
            if client_id is None:
                await accounts.update_one({"account": account}, {"$unset": {"client_id": ""}})
            else:
                # Upsert: a never-synced account gets a document of account and client_id only.
                change = {"$set": {"client_id": client_id}}
                await accounts.update_one({"account": account}, change, upsert=True)

    @operation("get_sources")
    async def get_sources(self) -> dict[int, str]:
        async with self._db.guard("get_sources") as client:
            coll = self._db.collection(client, self.collection)
            cursor = coll.find({SOURCE_FIELD: {"$type": "string"}}, {"_id": 0, "account": 1, SOURCE_FIELD: 1})
            return {
                int(doc["account"]): doc[SOURCE_FIELD]
                async for doc in cursor
                if isinstance(doc.get("account"), int) and valid_source(doc.get(SOURCE_FIELD))
            }

    @operation("set_sources")
    async def set_sources(self, sources: Mapping[int, str]) -> None:
        ops = [UpdateOne({"account": a}, {"$set": {SOURCE_FIELD: s}}) for a, s in source_items(sources)]
        if not ops:
            return
        async with self._db.guard("set_sources") as client:
            await bulk_in_chunks(self._db.collection(client, self.collection), ops, lambda op: op)
