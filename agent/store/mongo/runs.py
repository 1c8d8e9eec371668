"""`mt5_sync_runs` in MongoDB, the seed's sync history: one document per run, keyed by run_id."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING

from agent.domain.runs import SyncRun
from agent.store.codec import run_from_doc, run_to_doc
from agent.store.mongo.connection import MongoConnection
from agent.store.observe import operation


class MongoRuns:
    """`RunStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str) -> None:
        self._db = db
        self.collection = collection
        db.declare_index(collection, [("run_id", ASCENDING)], unique=True)
        db.declare_index(collection, [("started_at", DESCENDING)])

    @operation("record_run")
    async def record_run(self, run: SyncRun) -> None:
        await self._db.ensure_indexes("record_run")
        async with self._db.guard("record_run") as client:
            coll = self._db.collection(client, self.collection)
            await coll.replace_one({"run_id": run.run_id}, run_to_doc(run), upsert=True)

    @operation("list_runs")
    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        if limit == 0:  # Mongo reads limit 0 as "no limit"
            return []
        async with self._db.guard("list_runs") as client:
            cursor = (
                self._db.collection(client, self.collection)
                .find({}, {"_id": 0})
                .sort([("started_at", DESCENDING), ("_id", DESCENDING)])
                .skip(offset)
                .limit(limit)
            )
            return [run_from_doc(doc) async for doc in cursor]

    @operation("count_runs")
    async def count_runs(self) -> int:
        async with self._db.guard("count_runs") as client:
            return await self._db.collection(client, self.collection).count_documents({})
