"""`mt5_trade_events` in SQLite: ids from INTEGER PRIMARY KEY AUTOINCREMENT (strictly increasing, never
reused, not even after pruning: sqlite_sequence keeps the highest ever assigned), the dedup key UNIQUE,
the event a JSON document beside the columns its reads filter on. One writer thread and one transaction
per append: ids increase in commit order. A pruned event's dedup key stays in mt5_trade_event_keys, so
the same change is never stored again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from agent.domain.trades import EventType, TradeEvent
from agent.store.codec import iso_ms
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction
from agent.store.sqlite.encoding import dumps
from agent.store.trade_checks import check_events, validate_listing, validate_pruning
from agent.store.trade_codec import event_from_doc, event_to_doc, unique_by_key

TABLE = "mt5_trade_events"
KEYS = "mt5_trade_event_keys"  # the dedup keys of pruned events: a pruned event is never stored again

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key   TEXT NOT NULL UNIQUE,
    account     INTEGER NOT NULL,
    type        TEXT NOT NULL,
    detected_at TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {TABLE}_account ON {TABLE} (account, id);
CREATE TABLE IF NOT EXISTS {KEYS} (
    dedup_key TEXT PRIMARY KEY,
    id        INTEGER NOT NULL,
    account   INTEGER NOT NULL
) WITHOUT ROWID;
"""

_INSERT = (
    f"INSERT INTO {TABLE} (dedup_key, account, type, detected_at, doc) SELECT ?, ?, ?, ?, ? "
    f"WHERE NOT EXISTS (SELECT 1 FROM {KEYS} WHERE dedup_key = ?) ON CONFLICT (dedup_key) DO NOTHING"
)
_KEEP_KEYS = (
    f"INSERT INTO {KEYS} (dedup_key, id, account) SELECT dedup_key, id, account FROM {TABLE} "
    "WHERE id < ? ON CONFLICT (dedup_key) DO NOTHING"
)


def latest_event_id(conn: sqlite3.Connection) -> int:
    """The greatest stored id, else the greatest ever assigned (0: none)."""
    (stored,) = conn.execute(f"SELECT max(id) FROM {TABLE}").fetchone()
    if stored is not None:
        return int(stored)
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (TABLE,)).fetchone()
    return int(row[0]) if row else 0


ALL = 2**63 - 1  # a prune cut above every id


class SQLiteEvents:
    """`EventStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("append_events")
    async def append_events(self, events: Sequence[TradeEvent]) -> list[TradeEvent]:
        events = unique_by_key(list(events))
        if not events:
            return []

        def write_sync(conn: sqlite3.Connection) -> list[TradeEvent]:
            check_events(events)
            rows = [
                (
                    e.dedup_key,
                    e.account,
                    e.type.value,
                    iso_ms(e.detected_at),
                    dumps(event_to_doc(e)),
                    e.dedup_key,
                )
                for e in events
            ]
            stored = []
            with transaction(conn):
                for row in rows:
                    cur = conn.execute(_INSERT, row)
                    if cur.rowcount == 1 and cur.lastrowid is not None:
                        stored.append((cur.lastrowid, row[4]))
            # Decoded from what was written: exactly what a later read gives back (ms times, lists).
            return [e for i, doc in stored if (e := event_from_doc(i, json.loads(doc))) is not None]

        return await self._db.run("append_events", write_sync)

    @operation("list_events")
    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int,
        accounts: set[int] | None = None,
        types: set[EventType] | None = None,
    ) -> list[TradeEvent]:
        validate_listing(after, limit)
        if limit == 0 or (accounts is not None and not accounts) or (types is not None and not types):
            return []
        where, params = ["id > ?"], [after]
        if accounts is not None:
            where.append(f"account IN ({', '.join('?' * len(accounts))})")
            params.extend(sorted(accounts))
        if types is not None:
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(sorted(EventType(t).value for t in types))  # type: ignore[misc]
        sql = f"SELECT id, doc FROM {TABLE} WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
        params.append(limit)

        def read_sync(conn: sqlite3.Connection) -> list[TradeEvent]:
            out = []
            for event_id, doc in conn.execute(sql, params):
                if (event := event_from_doc(event_id, json.loads(doc))) is not None:
                    out.append(event)
            return out

        return await self._db.run("list_events", read_sync, read=True)

    @operation("dedup_keys")
    async def dedup_keys(self, *, accounts: set[int] | None = None) -> list[str]:
        if accounts is not None and not accounts:
            return []
        where, params = "", sorted(accounts or ())
        if accounts is not None:
            where = f"WHERE account IN ({', '.join('?' * len(params))})"
        both = (
            f"SELECT id, dedup_key, account FROM {TABLE} UNION ALL SELECT id, dedup_key, account FROM {KEYS}"
        )
        sql = f"SELECT dedup_key FROM ({both}) {where} ORDER BY id"

        def read_sync(conn: sqlite3.Connection) -> list[str]:
            return [key for (key,) in conn.execute(sql, params)]

        return await self._db.run("dedup_keys", read_sync, read=True)

    @operation("latest_id")
    async def latest_id(self) -> int:
        return await self._db.run("latest_id", latest_event_id, read=True)

    @operation("oldest_available")
    async def oldest_available(self) -> int | None:
        return await self._db.run(
            "oldest_available",
            lambda conn: conn.execute(f"SELECT min(id) FROM {TABLE}").fetchone()[0],
            read=True,
        )

    @operation("prune_events")
    async def prune_events(self, *, keep_after: datetime | None = None, max_events: int | None = None) -> int:
        validate_pruning(max_events)
        if keep_after is None and max_events is None:
            return 0

        def prune_sync(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                cut = 0  # every id below it goes
                if keep_after is not None:
                    sql = f"SELECT id FROM {TABLE} WHERE detected_at >= ? ORDER BY id LIMIT 1"
                    row = conn.execute(sql, (iso_ms(keep_after),)).fetchone()
                    cut = max(cut, row[0] if row else ALL)
                if max_events is not None:
                    sql = f"SELECT id FROM {TABLE} ORDER BY id DESC LIMIT 1 OFFSET ?"
                    row = conn.execute(sql, (max_events - 1,)).fetchone() if max_events else None
                    cut = max(cut, ALL if max_events == 0 else row[0] if row else 0)
                conn.execute(_KEEP_KEYS, (cut,))
                return conn.execute(f"DELETE FROM {TABLE} WHERE id < ?", (cut,)).rowcount

        return await self._db.run("prune_events", prune_sync)
