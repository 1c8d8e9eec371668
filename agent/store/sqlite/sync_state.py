"""`mt5_sync_state` in SQLite: one row per account, replaced whole on each write."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.domain.accounts import AccountSyncState
from agent.store.checks import check_storable
from agent.store.codec import STATE_FIELDS, last_per_account, state_from_doc, state_to_doc
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction
from agent.store.sqlite.encoding import IsoMemo

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_sync_state (
    account              INTEGER PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    last_reason          TEXT,
    last_failure_at      TEXT,
    last_attempt_at      TEXT,
    last_live_at         TEXT
);
"""

_UPSERT_STATE = (
    f"INSERT INTO mt5_sync_state ({', '.join(STATE_FIELDS)}) VALUES ({', '.join('?' * len(STATE_FIELDS))}) "
    "ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS if f != "account")
)


def state_rows(states: Sequence[AccountSyncState], iso: IsoMemo) -> list[tuple[Any, ...]]:
    rows = []
    for state in states:
        doc = state_to_doc(state)
        rows.append(tuple(iso[v] if isinstance(v := doc[f], datetime) else v for f in STATE_FIELDS))
    return rows


def write_state_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Inside the caller's transaction."""
    conn.executemany(_UPSERT_STATE, rows)


class SQLiteSyncState:
    """`SyncStateStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("get_sync_states")
    async def get_sync_states(self) -> dict[int, AccountSyncState]:
        def read_sync(conn: sqlite3.Connection) -> dict[int, AccountSyncState]:
            cur = conn.execute(f"SELECT {', '.join(STATE_FIELDS)} FROM mt5_sync_state ORDER BY account")
            return {row[0]: state_from_doc(dict(zip(STATE_FIELDS, row, strict=True))) for row in cur}

        return await self._db.run("get_sync_states", read_sync, read=True)

    @operation("write_states")
    async def write_states(self, states: Sequence[AccountSyncState]) -> None:
        states = last_per_account(states)
        if not states:
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            check_storable((), states)
            rows = state_rows(states, IsoMemo())
            with transaction(conn):
                write_state_rows(conn, rows)

        await self._db.run("write_states", write_sync)
