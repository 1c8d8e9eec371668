"""MongoDB-only behaviour of positions, deals and events: indexes, one bulk insert per append, the id
counter (never reusing a stored id), a dedup race with another writer, a server that is down."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection

from agent.store.errors import StoreUnavailable
from agent.store.mongo import CollectionNames, MongoStore
from agent.store.mongo.events import _insert_ordered
from tests.ports import free_port

from .factories import T0
from .mongo_server import MongoServer
from .trade_factories import deal, event, position, snapshot


async def test_unique_indexes_keep_keys_single(mongo_store: MongoStore, mongo_server: MongoServer) -> None:
    with mongo_server.client() as client:
        db = client[mongo_store.database]
        events = db["mt5_trade_events"].index_information()
        deals = db["mt5_deals"].index_information()
        positions = db["mt5_positions"].index_information()
    assert any(i["key"] == [("dedup_key", 1)] and i.get("unique") for i in events.values())
    assert any(i["key"] == [("account", 1), ("ticket", 1)] and i.get("unique") for i in deals.values())
    assert any(i["key"] == [("account", 1)] and i.get("unique") for i in positions.values())


async def test_appending_a_thousand_events_is_one_insert_and_one_claim(
    mongo_store: MongoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    for name in ("insert_many", "insert_one", "find_one_and_update", "bulk_write"):
        real = getattr(AsyncCollection, name)

        async def counting(
            self: AsyncCollection[Any], *a: Any, _real: Any = real, _n: str = name, **kw: Any
        ) -> Any:
            calls[f"{self.name}.{_n}"] += 1
            return await _real(self, *a, **kw)

        monkeypatch.setattr(AsyncCollection, name, counting)
    stored = await mongo_store.events.append_events([event(1, f"k{i}") for i in range(1000)])
    assert len(stored) == 1000
    assert calls == Counter({"mt5_trade_events.insert_many": 1, "mt5_counters.find_one_and_update": 1})


async def test_events_are_plain_documents(mongo_store: MongoStore, mongo_server: MongoServer) -> None:
    [e] = await mongo_store.events.append_events([event(7, "deal:1", data={"changes": {"sl": [1.0, 2.0]}})])
    with mongo_server.client() as client:
        raw = client[mongo_store.database]["mt5_trade_events"].find_one({"dedup_key": "deal:1"})
        counter = client[mongo_store.database]["mt5_counters"].find_one({"_id": "mt5_trade_events"})
    assert raw is not None and counter is not None
    assert raw["_id"] == e.id == counter["seq"]
    assert (raw["account"], raw["type"], raw["data"]) == (7, "TRADE_OPENED", {"changes": {"sl": [1.0, 2.0]}})
    assert raw["time"] == e.time


async def test_a_lost_counter_never_hands_out_a_stored_id(
    mongo_store: MongoStore, mongo_server: MongoServer
) -> None:
    stored = await mongo_store.events.append_events([event(1, f"k{i}") for i in range(5)])
    with mongo_server.client() as client:
        client[mongo_store.database]["mt5_counters"].delete_many({})  # e.g. a partial restore
    restarted = MongoStore(mongo_server.url, database=mongo_store.database)
    await restarted.open()
    try:
        [fresh] = await restarted.events.append_events([event(1, "after")])
    finally:
        await restarted.close()
    assert fresh.id == stored[-1].id + 1  # type: ignore[operator]

    with mongo_server.client() as client:
        client[mongo_store.database]["mt5_counters"].delete_many({})  # lost while this object runs
    again = await mongo_store.events.append_events([event(1, "a"), event(1, "b")])
    assert [e.id for e in again] == [fresh.id + 1, fresh.id + 2]  # type: ignore[operator]
    assert len(await mongo_store.events.list_events(limit=100)) == 8


async def test_a_key_another_writer_stored_meanwhile_is_skipped(
    mongo_store: MongoStore, mongo_server: MongoServer
) -> None:
    """The pre-check found nothing, then another shard inserted the same key: that one document is
    skipped, the ones after it still go in, in order."""
    with mongo_server.client() as client:
        client[mongo_store.database]["mt5_trade_events"].insert_one({"_id": 1000, "dedup_key": "b"})
    docs = [{"_id": 1 + i, "dedup_key": key} for i, key in enumerate("abcd")]
    docs[3]["dedup_key"] = "b"  # twice in one insert too
    async with mongo_store._db.guard("test") as client:
        coll = client[mongo_store.database]["mt5_trade_events"]
        inserted = await _insert_ordered(coll, docs)
        assert [d["dedup_key"] for d in inserted] == ["a", "c"]
        assert sorted([d["_id"] async for d in coll.find({})]) == [1, 3, 1000]


async def test_an_unreachable_server_is_unavailable_for_trades() -> None:
    s = MongoStore(f"mongodb://127.0.0.1:{free_port()}/", timeout_ms=500)
    calls = (
        lambda: s.positions.replace_positions(1, snapshot(1, position(1, 2))),
        lambda: s.positions.get_positions(1),
        lambda: s.deals.put_deals([deal(1, 1)]),
        lambda: s.events.append_events([event(1, "k")]),
        lambda: s.events.list_events(limit=5),
        s.events.latest_id,
        lambda: s.events.prune_events(keep_after=T0),
    )
    try:
        with pytest.raises(StoreUnavailable):
            await s.open()
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()
    finally:
        await s.close()


async def test_trade_collections_are_chosen_by_name(mongo_server: MongoServer, database: str) -> None:
    names = CollectionNames(positions="pos", deals="dl", events="ev", counters="ctr")
    assert CollectionNames().events == "mt5_trade_events"
    s = MongoStore(mongo_server.url, database=database, collections=names)
    await s.open()
    try:
        await s.positions.replace_positions(1, snapshot(1))
        await s.deals.put_deals([deal(1, 1)])
        await s.events.append_events([event(1, "k")])
    finally:
        await s.close()
    with mongo_server.client() as client:
        assert {"pos", "dl", "ev", "ctr"} <= set(client[database].list_collection_names())
