"""`mt5_deals` in MongoDB: one document per (account, ticket), upserted whole (the unique index keeps two
writers from storing a deal twice)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReplaceOne

from agent.domain.trades import Deal
from agent.store.codec import parse_dt, utc_ms
from agent.store.mongo.bulk import bulk_in_chunks
from agent.store.mongo.connection import MongoConnection
from agent.store.observe import operation
from agent.store.trade_checks import check_deals
from agent.store.trade_codec import deal_from_doc, deal_to_doc, last_per_ticket


def deal_op(deal: Deal) -> ReplaceOne:
    return ReplaceOne({"account": deal.account, "ticket": deal.ticket}, deal_to_doc(deal), upsert=True)


class MongoDeals:
    """`DealStore` on one collection."""

    def __init__(self, db: MongoConnection, collection: str) -> None:
        self._db = db
        self.collection = collection
        db.declare_index(collection, [("account", ASCENDING), ("ticket", ASCENDING)], unique=True)
        db.declare_index(collection, [("account", ASCENDING), ("time", ASCENDING)])
        db.declare_index(collection, [("account", ASCENDING), ("position_id", ASCENDING)])

    @operation("put_deals")
    async def put_deals(self, deals: Sequence[Deal]) -> None:
        deals = last_per_ticket(deals)
        if not deals:
            return
        check_deals(deals)  # before any chunk is sent: refused means nothing written
        await self._db.ensure_indexes("put_deals")
        async with self._db.guard("put_deals") as client:
            await bulk_in_chunks(self._db.collection(client, self.collection), deals, deal_op)

    @operation("get_deals")
    async def get_deals(
        self,
        account: int,
        *,
        position_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Deal]:
        query: dict[str, Any] = {"account": account}
        if position_id is not None:
            query["position_id"] = position_id
        if since is not None or until is not None:
            query["time"] = {}
            if since is not None:
                query["time"]["$gte"] = utc_ms(since)
            if until is not None:
                query["time"]["$lt"] = utc_ms(until)
        async with self._db.guard("get_deals") as client:
            cursor = (
                self._db.collection(client, self.collection)
                .find(query, {"_id": 0})
                .sort([("time", ASCENDING), ("ticket", ASCENDING)])
            )
            return [deal_from_doc(doc) async for doc in cursor]

    @operation("latest_deal_time")
    async def latest_deal_time(self, account: int) -> datetime | None:
        async with self._db.guard("latest_deal_time") as client:
            coll = self._db.collection(client, self.collection)
            doc = await coll.find_one(
                {"account": account}, {"_id": 0, "time": 1}, sort=[("time", DESCENDING)]
            )
        return parse_dt(doc.get("time"), "time") if doc else None
