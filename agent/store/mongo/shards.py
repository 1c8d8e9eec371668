"""`mt5_agent_shards` in MongoDB (agent.store.shard_lease): one document per shard process, keyed by
`instance`, in the database every shard shares."""

from __future__ import annotations

from datetime import datetime

from pymongo import ASCENDING

from agent.store.codec import utc_ms
from agent.store.mongo.connection import MongoConnection
from agent.store.observe import operation
from agent.store.shard_lease import ShardLease, lease_from_doc, lease_to_doc

SHARDS = "mt5_agent_shards"


class MongoShards:
    """`ShardLeaseStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str = SHARDS) -> None:
        self._db = db
        self.collection = collection
        db.declare_index(collection, [("instance", ASCENDING)], unique=True)

    @operation("shard_beat")
    async def beat(self, lease: ShardLease) -> None:
        doc = lease_to_doc(lease)
        await self._db.ensure_indexes("shard_beat")
        async with self._db.guard("shard_beat") as client:
            coll = self._db.collection(client, self.collection)
            await coll.replace_one({"instance": lease.instance}, doc, upsert=True)

    @operation("shard_list")
    async def list_leases(self) -> list[ShardLease]:
        async with self._db.guard("shard_list") as client:
            cursor = self._db.collection(client, self.collection).find({}, {"_id": 0})
            leases = [lease_from_doc(doc) async for doc in cursor]
        return sorted((x for x in leases if x is not None), key=lambda x: (x.index, x.instance))

    @operation("shard_release")
    async def release(self, instance: str) -> None:
        async with self._db.guard("shard_release") as client:
            await self._db.collection(client, self.collection).delete_one({"instance": instance})

    @operation("shard_prune")
    async def prune_leases(self, before: datetime) -> int:
        async with self._db.guard("shard_prune") as client:
            coll = self._db.collection(client, self.collection)
            result = await coll.delete_many({"heartbeat_at": {"$lt": utc_ms(before)}})
            return int(result.deleted_count)
