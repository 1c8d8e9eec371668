"""`mt5_positions` in SQLite: one row per account holding its whole snapshot as a JSON document, so a
replace is one row written in one transaction (a reader sees the old set or the new one)."""

from __future__ import annotations

import json
import sqlite3

from agent.domain.trades import PositionsSnapshot
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction
from agent.store.sqlite.encoding import dumps
from agent.store.sqlite.events import latest_event_id
from agent.store.trade_checks import check_snapshot
from agent.store.trade_codec import snapshot_from_doc, snapshot_to_doc

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_positions (
    account INTEGER PRIMARY KEY,
    doc     TEXT NOT NULL
);
"""

_REPLACE = (
    "INSERT INTO mt5_positions (account, doc) VALUES (?, ?) "
    "ON CONFLICT (account) DO UPDATE SET doc = excluded.doc"
)


class SQLitePositions:
    """`PositionStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("replace_positions")
    async def replace_positions(self, account: int, snapshot: PositionsSnapshot) -> PositionsSnapshot:
        check_snapshot(account, snapshot)

        def write_sync(conn: sqlite3.Connection) -> PositionsSnapshot:
            with transaction(conn):
                event_id = snapshot.as_of_event_id
                if event_id is None:
                    event_id = latest_event_id(conn)
                doc = snapshot_to_doc(snapshot, event_id)
                conn.execute(_REPLACE, (account, dumps(doc)))
            return snapshot_from_doc(doc)

        return await self._db.run("replace_positions", write_sync)

    @operation("get_positions")
    async def get_positions(self, account: int) -> PositionsSnapshot | None:
        def read_sync(conn: sqlite3.Connection) -> PositionsSnapshot | None:
            row = conn.execute("SELECT doc FROM mt5_positions WHERE account = ?", (account,)).fetchone()
            return snapshot_from_doc(json.loads(row[0])) if row else None

        return await self._db.run("get_positions", read_sync, read=True)

    @operation("get_all_positions")
    async def get_all_positions(self) -> dict[int, PositionsSnapshot]:
        def read_sync(conn: sqlite3.Connection) -> dict[int, PositionsSnapshot]:
            rows = conn.execute("SELECT account, doc FROM mt5_positions ORDER BY account")
            return {account: snapshot_from_doc(json.loads(doc)) for account, doc in rows}

        return await self._db.run("get_all_positions", read_sync, read=True)
