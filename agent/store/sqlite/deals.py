"""`mt5_deals` in SQLite: one row per (account, ticket), the deal a JSON document beside the columns its
reads select on (position, time as fixed-width ISO text, which sorts in time order)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.domain.trades import Deal
from agent.store.codec import iso_ms, parse_dt
from agent.store.observe import operation
from agent.store.sqlite.connection import SQLiteConnection, transaction
from agent.store.sqlite.encoding import dumps
from agent.store.trade_checks import check_deals
from agent.store.trade_codec import deal_from_doc, deal_to_doc, last_per_ticket

SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_deals (
    account     INTEGER NOT NULL,
    ticket      INTEGER NOT NULL,
    position_id INTEGER NOT NULL,
    time        TEXT NOT NULL,
    doc         TEXT NOT NULL,
    PRIMARY KEY (account, ticket)
);
CREATE INDEX IF NOT EXISTS mt5_deals_time ON mt5_deals (account, time, ticket);
CREATE INDEX IF NOT EXISTS mt5_deals_position ON mt5_deals (account, position_id, time);
"""

_UPSERT = (
    "INSERT INTO mt5_deals (account, ticket, position_id, time, doc) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (account, ticket) DO UPDATE SET position_id = excluded.position_id, "
    "time = excluded.time, doc = excluded.doc"
)


class SQLiteDeals:
    """`DealStore` on the SQLite file."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db

    @operation("put_deals")
    async def put_deals(self, deals: Sequence[Deal]) -> None:
        deals = last_per_ticket(deals)
        if not deals:
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            check_deals(deals)
            rows = [
                (d.account, d.ticket, d.position_id, iso_ms(d.time), dumps(deal_to_doc(d))) for d in deals
            ]
            with transaction(conn):
                conn.executemany(_UPSERT, rows)

        await self._db.run("put_deals", write_sync)

    @operation("get_deals")
    async def get_deals(
        self,
        account: int,
        *,
        position_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Deal]:
        where, params = ["account = ?"], [account]
        if position_id is not None:
            where.append("position_id = ?")
            params.append(position_id)
        if since is not None:
            where.append("time >= ?")
            params.append(iso_ms(since))  # type: ignore[arg-type]
        if until is not None:
            where.append("time < ?")
            params.append(iso_ms(until))  # type: ignore[arg-type]
        sql = f"SELECT doc FROM mt5_deals WHERE {' AND '.join(where)} ORDER BY time, ticket"

        def read_sync(conn: sqlite3.Connection) -> list[Deal]:
            return [deal_from_doc(json.loads(doc)) for (doc,) in conn.execute(sql, params)]

        return await self._db.run("get_deals", read_sync, read=True)

    @operation("latest_deal_time")
    async def latest_deal_time(self, account: int) -> datetime | None:
        def read_sync(conn: sqlite3.Connection) -> Any:
            return conn.execute("SELECT max(time) FROM mt5_deals WHERE account = ?", (account,)).fetchone()[0]

        return parse_dt(await self._db.run("latest_deal_time", read_sync, read=True), "time")
