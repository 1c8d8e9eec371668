"""`mt5_trade_events` in MongoDB: the id is the document's `_id`, drawn from a counter document
(`mt5_counters`, `_id` = this collection) with one `find_one_and_update` `$inc` per append, so store
objects sharing one database (shards) never assign the same id; a unique index on `dedup_key` keeps an
event from being stored twice whoever writes it.

Within one store object appends are serialised (a lock) and inserted ordered, so its ids increase in
commit order; a write that fails after claiming ids leaves a gap, never a reuse. The counter is raised to
the greatest stored `_id` once per store object (`$max`), so a lost or restored counter cannot hand out
an id already stored. Pruning keeps the dedup keys of what it drops (`mt5_trade_event_keys`, `_id` the
key): a pruned event is never stored again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from agent.domain.trades import EventType, TradeEvent
from agent.store.codec import utc_ms
from agent.store.errors import StoreError
from agent.store.mongo.bulk import BULK_CHUNK
from agent.store.mongo.connection import Document, MongoConnection
from agent.store.observe import operation
from agent.store.trade_checks import check_events, validate_listing, validate_pruning
from agent.store.trade_codec import event_from_doc, event_to_doc, unique_by_key

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000
_NO_CHANGE_STREAMS = (40573, 40324)  # "$changeStream only supported on replica sets", unrecognised stage


def _duplicate_of(error: dict[str, Any]) -> str | None:
    """Which unique key a write error duplicates ("dedup_key", "_id"), None when it is no duplicate."""
    if error.get("code") != _DUPLICATE_KEY:
        return None
    pattern = error.get("keyPattern") or error.get("keyValue") or {}
    if "dedup_key" in pattern or "dedup_key" in str(error.get("errmsg", "")):
        return "dedup_key"
    return "_id"


async def _insert_keys(keys: AsyncCollection[Document], docs: list[Document]) -> None:
    try:
        await keys.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != _DUPLICATE_KEY for e in exc.details.get("writeErrors") or []):
            raise
        if exc.details.get("writeConcernErrors"):
            raise


class _IdTaken(Exception):
    """An id claimed from the counter is stored already (the counter was lost or reset meanwhile, or a
    writer bypassed it): `stored` went in, `rest` still needs ids."""

    def __init__(self, stored: list[Document], rest: list[Document]) -> None:
        super().__init__("id taken")
        self.stored, self.rest = stored, rest


async def _insert_ordered(coll: AsyncCollection[Document], docs: list[Document]) -> list[Document]:
    """Insert in id order, skipping a document whose dedup_key another writer stored meanwhile; what was
    inserted, in order. _IdTaken when an id is stored already; any other write error is raised."""
    stored: list[Document] = []
    start = 0
    while start < len(docs):
        batch = docs[start:]
        try:
            await coll.insert_many(batch, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors") or []
            duplicate = _duplicate_of(errors[0]) if errors else None
            if duplicate is None:
                raise
            index = int(errors[0]["index"])
            stored.extend(batch[:index])
            if duplicate == "_id":
                raise _IdTaken(stored, batch[index:]) from None
            start += index + 1
        else:
            stored.extend(batch)
            break
    return stored


class MongoEvents:
    """`EventStore` on one collection and a counter document in `counters`."""

    def __init__(self, db: MongoConnection, collection: str, counters: str, keys: str) -> None:
        self._db = db
        self.collection = collection
        self.counters = counters
        self.keys = keys  # the dedup keys of pruned events, `_id` the key
        self._append_lock = asyncio.Lock()
        self._counter_checked = False
        db.declare_index(collection, [("dedup_key", ASCENDING)], unique=True)
        db.declare_index(collection, [("account", ASCENDING), ("_id", ASCENDING)])
        db.declare_index(keys, [("account", ASCENDING), ("id", ASCENDING)])

    def _coll(self, client: AsyncMongoClient[Document]) -> AsyncCollection[Document]:
        return self._db.collection(client, self.collection)

    async def _claim_ids(self, client: AsyncMongoClient[Document], count: int) -> int:
        """The first of `count` consecutive ids no one else will get. The counter document is made (and
        raised to the greatest stored id) first, once per store object: two writers upserting a missing
        counter at once may collide on its `_id` (a duplicate key, retried here)."""
        counters = self._db.collection(client, self.counters)
        for attempt in range(3):
            try:
                if not self._counter_checked:
                    newest = await self._coll(client).find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
                    floor = int(newest["_id"]) if newest is not None else 0
                    await counters.update_one({"_id": self.collection}, {"$max": {"seq": floor}}, upsert=True)
                    self._counter_checked = True
                doc = await counters.find_one_and_update(
                    {"_id": self.collection},
                    {"$inc": {"seq": count}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                if attempt == 2:
                    raise
                continue
            if doc is not None:
                return int(doc["seq"]) - count + 1
            self._counter_checked = False  # the counter vanished under us: make it again
        raise StoreError(f"MongoDB counter {self.counters}/{self.collection} could not be incremented")

    @operation("append_events")
    async def append_events(self, events: Sequence[TradeEvent]) -> list[TradeEvent]:
        events = unique_by_key(list(events))
        if not events:
            return []
        check_events(events)  # before anything is sent: refused means nothing written
        docs = [event_to_doc(e) for e in events]
        await self._db.ensure_indexes("append_events")
        async with self._append_lock, self._db.guard("append_events") as client:
            coll = self._coll(client)
            keys = [d["dedup_key"] for d in docs]
            cursor = coll.find({"dedup_key": {"$in": keys}}, {"_id": 0, "dedup_key": 1})
            known = {d["dedup_key"] async for d in cursor}
            pruned = self._db.collection(client, self.keys).find({"_id": {"$in": keys}}, {"_id": 1})
            known.update([d["_id"] async for d in pruned])
            fresh = [d for d in docs if d["dedup_key"] not in known]
            if not fresh:
                return []
            stored: list[Document] = []
            for _ in range(3):
                first = await self._claim_ids(client, len(fresh))
                for offset, doc in enumerate(fresh):
                    doc["_id"] = first + offset
                try:
                    stored += await _insert_ordered(coll, fresh)
                    break
                except _IdTaken as taken:
                    log.warning("MongoDB event id %s is taken: raising the counter", taken.rest[0]["_id"])
                    stored += taken.stored
                    fresh = taken.rest
                    self._counter_checked = False  # raise it to the greatest stored id, then claim again
            else:
                raise StoreError(f"MongoDB append_events: ids of {self.collection} keep colliding")
        return [e for d in stored if (e := event_from_doc(d["_id"], d)) is not None]

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
            return []  # (Mongo reads limit 0 as "no limit")
        query: dict[str, Any] = {"_id": {"$gt": after}}
        if accounts is not None:
            query["account"] = {"$in": sorted(accounts)}
        if types is not None:
            query["type"] = {"$in": sorted(EventType(t).value for t in types)}
        async with self._db.guard("list_events") as client:
            cursor = self._coll(client).find(query).sort("_id", ASCENDING).limit(limit)
            return [e async for d in cursor if (e := event_from_doc(int(d["_id"]), d)) is not None]

    @operation("dedup_keys")
    async def dedup_keys(self, *, accounts: set[int] | None = None) -> list[str]:
        if accounts is not None and not accounts:
            return []
        query = {} if accounts is None else {"account": {"$in": sorted(accounts)}}
        async with self._db.guard("dedup_keys") as client:
            cursor = self._coll(client).find(query, {"_id": 1, "dedup_key": 1})
            found = [(int(d["_id"]), str(d["dedup_key"])) async for d in cursor]
            pruned = self._db.collection(client, self.keys).find(query, {"_id": 1, "id": 1})
            found += [(int(d["id"]), str(d["_id"])) async for d in pruned]
        return [key for _, key in sorted(found)]

    async def _latest_id(self) -> int:
        """`latest_id` without reporting an operation (replace_positions calls it)."""
        async with self._db.guard("latest_id") as client:
            newest = await self._coll(client).find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
            if newest is not None:
                return int(newest["_id"])
            counter = await self._db.collection(client, self.counters).find_one({"_id": self.collection})
            return int(counter["seq"]) if counter is not None else 0

    @operation("latest_id")
    async def latest_id(self) -> int:
        return await self._latest_id()

    @operation("oldest_available")
    async def oldest_available(self) -> int | None:
        async with self._db.guard("oldest_available") as client:
            oldest = await self._coll(client).find_one({}, {"_id": 1}, sort=[("_id", ASCENDING)])
        return int(oldest["_id"]) if oldest is not None else None

    @operation("prune_events")
    async def prune_events(self, *, keep_after: datetime | None = None, max_events: int | None = None) -> int:
        validate_pruning(max_events)
        if keep_after is None and max_events is None:
            return 0
        everything = 2**63 - 1  # a cut above every id
        async with self._db.guard("prune_events") as client:
            coll = self._coll(client)
            cut = 0  # every id below it goes
            if keep_after is not None:
                first_kept = await coll.find_one(
                    {"detected_at": {"$gte": utc_ms(keep_after)}}, {"_id": 1}, sort=[("_id", ASCENDING)]
                )
                cut = max(cut, int(first_kept["_id"]) if first_kept is not None else everything)
            if max_events == 0:
                cut = everything
            elif max_events is not None:
                cursor = coll.find({}, {"_id": 1}).sort("_id", DESCENDING).skip(max_events - 1).limit(1)
                kept = [int(d["_id"]) async for d in cursor]
                cut = max(cut, kept[0] if kept else 0)
            if cut == 0:
                return 0
            await self._keep_keys(client, cut)
            result = await coll.delete_many({"_id": {"$lt": cut}})
            return result.deleted_count

    async def _keep_keys(self, client: AsyncMongoClient[Document], cut: int) -> None:
        """Copy the dedup keys of the events below `cut` (about to be pruned) to the keys collection,
        in chunks; a key already there (an earlier prune that failed half-way) is fine."""
        keys = self._db.collection(client, self.keys)
        cursor = self._coll(client).find({"_id": {"$lt": cut}}, {"_id": 1, "dedup_key": 1, "account": 1})
        chunk: list[Document] = []
        async for d in cursor:
            chunk.append({"_id": d["dedup_key"], "id": d["_id"], "account": d["account"]})
            if len(chunk) == BULK_CHUNK:
                await _insert_keys(keys, chunk)
                chunk = []
        if chunk:
            await _insert_keys(keys, chunk)

    async def inserted(self) -> AsyncIterator[int]:
        """The ids of events inserted from now on, by any writer (a change stream on the collection), after a
        first 0 once the stream is open: a doorbell for the event hub of a shard, which still reads the
        events themselves by id. Ends at once, logged, when the server has no change streams (not a
        replica set); StoreError on other failures."""
        pipeline: list[dict[str, Any]] = [
            {"$match": {"operationType": "insert"}},
            {"$project": {"documentKey": 1}},
        ]
        async with self._db.guard("watch_events") as client:
            coll = self._db.collection(client, self.collection)
            try:
                stream = await coll.watch(pipeline, max_await_time_ms=1000)
            except OperationFailure as exc:
                if exc.code in _NO_CHANGE_STREAMS or "replica set" in str(exc).lower():
                    log.info("MongoDB has no change streams here (%s): events are polled", exc.code)
                    return
                raise
            async with stream:
                yield 0  # open: what follows are inserts
                async for change in stream:
                    key = change.get("documentKey") or {}
                    if isinstance(key.get("_id"), int):
                        yield key["_id"]
