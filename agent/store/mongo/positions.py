"""`mt5_positions` in MongoDB: one document per account holding its whole snapshot, so a replace is one
single-document write, atomic on any server (a reader sees the old set or the new one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pymongo import ASCENDING

from agent.domain.trades import PositionsSnapshot
from agent.store.mongo.connection import MongoConnection
from agent.store.observe import operation
from agent.store.trade_checks import check_snapshot
from agent.store.trade_codec import snapshot_from_doc, snapshot_to_doc


class MongoPositions:
    """`PositionStore` on one collection; `latest_event_id` gives a snapshot's default as_of_event_id."""

    def __init__(
        self, db: MongoConnection, collection: str, latest_event_id: Callable[[], Awaitable[int]]
    ) -> None:
        self._db = db
        self.collection = collection
        self._latest_event_id = latest_event_id
        db.declare_index(collection, [("account", ASCENDING)], unique=True)

    @operation("replace_positions")
    async def replace_positions(self, account: int, snapshot: PositionsSnapshot) -> PositionsSnapshot:
        check_snapshot(account, snapshot)
        event_id = snapshot.as_of_event_id
        if event_id is None:
            event_id = await self._latest_event_id()
        doc = snapshot_to_doc(snapshot, event_id)
        await self._db.ensure_indexes("replace_positions")
        async with self._db.guard("replace_positions") as client:
            await self._db.collection(client, self.collection).replace_one(
                {"account": account}, doc, upsert=True
            )
        return snapshot_from_doc(doc)

    @operation("get_positions")
    async def get_positions(self, account: int) -> PositionsSnapshot | None:
        async with self._db.guard("get_positions") as client:
            doc = await self._db.collection(client, self.collection).find_one(
                {"account": account}, {"_id": 0}
            )
        return snapshot_from_doc(doc) if doc is not None else None

    @operation("get_all_positions")
    async def get_all_positions(self) -> dict[int, PositionsSnapshot]:
        async with self._db.guard("get_all_positions") as client:
            cursor = (
                self._db.collection(client, self.collection).find({}, {"_id": 0}).sort("account", ASCENDING)
            )
            return {int(doc["account"]): snapshot_from_doc(doc) async for doc in cursor}
