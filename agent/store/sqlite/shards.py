"""`mt5_agent_shards` in SQLite (agent.store.shard_lease): one JSON document per shard process. A shared
store is MongoDB in production; SQLite holds them too, so one code path runs everywhere."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from agent.store.codec import iso_ms
from agent.store.observe import operation
from agent.store.shard_lease import ShardLease, lease_from_doc, lease_to_doc
from agent.store.sqlite.connection import SQLiteConnection
from agent.store.sqlite.encoding import dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_agent_shards (
    instance     TEXT PRIMARY KEY,
    heartbeat_at TEXT NOT NULL,
    doc          TEXT NOT NULL
);
"""

_UPSERT = (
    "INSERT INTO mt5_agent_shards (instance, heartbeat_at, doc) VALUES (?, ?, ?) "
    "ON CONFLICT (instance) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, doc = excluded.doc"
)


class SQLiteShards:
    """`ShardLeaseStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("shard_beat")
    async def beat(self, lease: ShardLease) -> None:
        doc = lease_to_doc(lease)
        row = (lease.instance, iso_ms(doc["heartbeat_at"]), dumps(doc))
        await self._db.run("shard_beat", lambda conn: conn.execute(_UPSERT, row))

    @operation("shard_list")
    async def list_leases(self) -> list[ShardLease]:
        def read_sync(conn: sqlite3.Connection) -> list[ShardLease]:
            leases = [
                lease_from_doc(json.loads(doc)) for (doc,) in conn.execute("SELECT doc FROM mt5_agent_shards")
            ]
            return sorted((x for x in leases if x is not None), key=lambda x: (x.index, x.instance))

        return await self._db.run("shard_list", read_sync, read=True)

    @operation("shard_release")
    async def release(self, instance: str) -> None:
        await self._db.run(
            "shard_release",
            lambda conn: conn.execute("DELETE FROM mt5_agent_shards WHERE instance = ?", (instance,)),
        )

    @operation("shard_prune")
    async def prune_leases(self, before: datetime) -> int:
        cutoff = iso_ms(before)
        return await self._db.run(
            "shard_prune",
            lambda conn: (
                conn.execute("DELETE FROM mt5_agent_shards WHERE heartbeat_at < ?", (cutoff,)).rowcount
            ),
        )
