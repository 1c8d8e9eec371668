"""`mt5_equity` in SQLite: one row per (account, time), clustered on that key (WITHOUT ROWID) so an
account's range is one contiguous read; times as integer milliseconds since the epoch. A second index on
time alone makes pruning by age a range delete, done in chunks so the sync's own writes are not held."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from agent.domain.equity import EquityPoint
from agent.store.equity_checks import check_equity_points
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_equity (
    account INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    equity  REAL NOT NULL,
    balance REAL,
    PRIMARY KEY (account, time)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mt5_equity_time ON mt5_equity (time);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
PRUNE_CHUNK = 20_000  # rows deleted per transaction: the writer thread is free in between

_UPSERT = (
    "INSERT INTO mt5_equity (account, time, equity, balance) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (account, time) DO UPDATE SET equity = excluded.equity, balance = excluded.balance"
)
_PRUNE = (
    "DELETE FROM mt5_equity WHERE (account, time) IN "
    "(SELECT account, time FROM mt5_equity WHERE time < ? LIMIT ?)"
)


def epoch_ms(dt: datetime) -> int:
    """Milliseconds since the epoch, floored like every stored time (a naive value is taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def from_epoch_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS


class SQLiteEquity:
    """`EquityStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("put_equity")
    async def put_equity(self, points: Sequence[EquityPoint]) -> None:
        if not points:
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            check_equity_points(points)
            rows = [(p.account, epoch_ms(p.time), p.equity, p.balance) for p in points]
            with transaction(conn):
                conn.executemany(_UPSERT, rows)

        await self._db.run("put_equity", write_sync)

    @operation("get_equity")
    async def get_equity(
        self, account: int, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[EquityPoint]:
        sql = "SELECT time, equity, balance FROM mt5_equity WHERE account = ?"
        params: list[int] = [account]
        if since is not None:
            sql += " AND time >= ?"
            params.append(epoch_ms(since))
        if until is not None:
            sql += " AND time < ?"
            params.append(epoch_ms(until))
        sql += " ORDER BY time"

        def read_sync(conn: sqlite3.Connection) -> list[EquityPoint]:
            return [
                EquityPoint(account, from_epoch_ms(t), equity, balance)
                for t, equity, balance in conn.execute(sql, params)
            ]

        return await self._db.run("get_equity", read_sync, read=True)

    @operation("prune_equity")
    async def prune_equity(self, before: datetime) -> int:
        limit = epoch_ms(before)

        def prune_sync(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return conn.execute(_PRUNE, (limit, PRUNE_CHUNK)).rowcount

        dropped = 0
        while True:
            n = await self._db.run("prune_equity", prune_sync)
            dropped += n
            if n < PRUNE_CHUNK:
                return dropped
