"""`mt5_equity` in MongoDB: one document per (account, time) (unique index: a point recorded twice, by a
restart or another shard, is stored once), an index on time alone for pruning by age."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, UpdateOne

from agent.domain.equity import EquityPoint
from agent.store.codec import parse_dt, utc_ms
from agent.store.equity_checks import check_equity_points
from agent.store.mongo.bulk import bulk_in_chunks
from agent.store.mongo.connection import MongoConnection
from agent.store.observe import operation


def _op(p: EquityPoint) -> UpdateOne:
    return UpdateOne(
        {"account": p.account, "time": utc_ms(p.time)},
        {"$set": {"equity": float(p.equity), "balance": None if p.balance is None else float(p.balance)}},
        upsert=True,
    )


def _point(doc: dict[str, Any]) -> EquityPoint | None:
    time = parse_dt(doc.get("time"), "time")
    equity, balance = doc.get("equity"), doc.get("balance")
    number = (int, float)
    if time is None or not isinstance(equity, number) or not (balance is None or isinstance(balance, number)):
        return None  # not ours (written by hand?): skipped, never read as a zero
    return EquityPoint(doc["account"], time, float(equity), None if balance is None else float(balance))


class MongoEquity:
    """`EquityStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str) -> None:
        self._db = db
        self.collection = collection
        db.declare_index(collection, [("account", ASCENDING), ("time", ASCENDING)], unique=True)
        db.declare_index(collection, [("time", ASCENDING)])

    @operation("put_equity")
    async def put_equity(self, points: Sequence[EquityPoint]) -> None:
        if not points:
            return
        check_equity_points(points)  # before any chunk is sent: refused means nothing written
        await self._db.ensure_indexes("put_equity")
        async with self._db.guard("put_equity") as client:
            await bulk_in_chunks(self._db.collection(client, self.collection), points, _op)

    @operation("get_equity")
    async def get_equity(
        self, account: int, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[EquityPoint]:
        query: dict[str, Any] = {"account": account}
        if since is not None or until is not None:
            query["time"] = {}
            if since is not None:
                query["time"]["$gte"] = utc_ms(since)
            if until is not None:
                query["time"]["$lt"] = utc_ms(until)
        async with self._db.guard("get_equity") as client:
            cursor = (
                self._db.collection(client, self.collection)
                .find(query, {"_id": 0, "account": 1, "time": 1, "equity": 1, "balance": 1})
                .sort([("time", ASCENDING)])
            )
            return [p async for doc in cursor if (p := _point(doc)) is not None]

    @operation("prune_equity")
    async def prune_equity(self, before: datetime) -> int:
        async with self._db.guard("prune_equity") as client:
            result = await self._db.collection(client, self.collection).delete_many(
                {"time": {"$lt": utc_ms(before)}}
            )
        return int(result.deleted_count)
