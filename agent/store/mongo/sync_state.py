"""`mt5_sync_state` in MongoDB: one document per account, replaced whole on each write."""

from __future__ import annotations

from collections.abc import Sequence

from pymongo import ASCENDING, AsyncMongoClient, ReplaceOne

from agent.domain.accounts import AccountSyncState
from agent.store.checks import check_storable
from agent.store.codec import last_per_account, state_from_doc
from agent.store.mongo.bulk import bulk_in_chunks
from agent.store.mongo.connection import Document, MongoConnection
from agent.store.observe import operation


def state_op(state: AccountSyncState) -> ReplaceOne:
    """The document of `state_to_doc`, key order included (tests/store/test_mongo_encoding.py), written
    out field by field: it runs for every account of every cycle."""
    reason = state.last_reason
    doc = {
        "account": state.account,
        "consecutive_failures": state.consecutive_failures,
        "last_reason": None if reason is None else reason.value,
        "last_failure_at": state.last_failure_at,
        "last_attempt_at": state.last_attempt_at,
        "last_live_at": state.last_live_at,
    }
    return ReplaceOne({"account": state.account}, doc, upsert=True)


class MongoSyncState:
    """`SyncStateStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str) -> None:
        self._db = db
        self.collection = collection
        db.declare_index(collection, [("account", ASCENDING)], unique=True)

    @operation("get_sync_states")
    async def get_sync_states(self) -> dict[int, AccountSyncState]:
        async with self._db.guard("get_sync_states") as client:
            cursor = self._db.collection(client, self.collection).find({}, {"_id": 0})
            return {int(doc["account"]): state_from_doc(doc) async for doc in cursor}

    @operation("write_states")
    async def write_states(self, states: Sequence[AccountSyncState]) -> None:
        states = last_per_account(states)
        if not states:
            return
        check_storable((), states)
        await self._db.ensure_indexes("write_states")
        async with self._db.guard("write_states") as client:
            await self.write_in(client, states)

    async def write_in(self, client: AsyncMongoClient[Document], states: Sequence[AccountSyncState]) -> None:
        """Inside the caller's guard: states already de-duplicated and checked."""
        await bulk_in_chunks(self._db.collection(client, self.collection), states, state_op)
