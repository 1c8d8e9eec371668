"""The events contract (`store.events`, `mt5_trade_events`): store-assigned increasing ids, a unique
dedup_key (exactly once), id-ordered reads with filters and a cursor, retention and its bounds."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.trades import EventType, TradeEvent
from agent.store.base import Store, StoreRejected, cursor_expired

from ..conftest import Backend
from ..factories import T0, ms
from ..trade_factories import event

OPENED, UPDATED, CLOSED = EventType.TRADE_OPENED, EventType.TRADE_UPDATED, EventType.TRADE_CLOSED

RICH_DATA: dict[str, Any] = {
    "side": "sell",
    "volume": 0.1 + 0.2,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negative_zero": -0.0,
    "pnl": -1234.5678901234567,
    "count": 2**63 - 1,
    "small": -(2**63),
    "closed": True,
    "sl": None,
    "changes": {"sl": [0.0, 1.0912], "tp": [1.1, 0.0]},
    "deals": [[1, 2, [3, {"x": []}]], {}],
    "text": 'ümlaut ✓ "quoted" \\ \n\t \x00 nul',
    "dotted.key": 1,
    "": "empty key",
}


def as_stored(e: TradeEvent, event_id: int) -> TradeEvent:
    return dataclasses.replace(e, id=event_id, time=ms(e.time), detected_at=ms(e.detected_at))


async def all_events(store: Store, **kw: Any) -> list[TradeEvent]:
    return await store.events.list_events(limit=100_000, **kw)


async def test_an_event_round_trips_every_field(store: Store, backend: Backend) -> None:
    e = event(2**63 - 1, "deal:2**63", UPDATED, identifier=2**62, symbol="XAUUSD.ecn", data=RICH_DATA)
    [returned] = await store.events.append_events([e])
    assert returned.id is not None and returned.id >= 1
    assert returned == as_stored(e, returned.id)
    [got] = await all_events(store)
    assert got == returned
    assert got.data == RICH_DATA and repr(got.data) == repr(RICH_DATA)  # exact floats, -0.0, key order
    assert type(got.type) is EventType and got.time.utcoffset() == timedelta(0)

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await all_events(reopened) == [returned]
    finally:
        await reopened.close()


async def test_tuples_in_data_read_back_as_lists(store: Store) -> None:
    [returned] = await store.events.append_events([event(1, "k", data={"changes": {"sl": (1.0, 2.0)}})])
    assert returned.data == {"changes": {"sl": [1.0, 2.0]}}  # what a read gives, returned the same
    assert (await all_events(store))[0].data == {"changes": {"sl": [1.0, 2.0]}}


async def test_ids_increase_in_append_order_and_across_restarts(store: Store, backend: Backend) -> None:
    assert await store.events.latest_id() == 0
    assert await store.events.oldest_available() is None
    first = await store.events.append_events([event(1, f"a{i}") for i in range(5)])
    ids = [e.id for e in first]
    assert ids == sorted(ids) and len(set(ids)) == 5
    second = await store.events.append_events([event(2, "b0")])
    assert second[0].id > ids[-1]  # type: ignore[operator]
    assert await store.events.latest_id() == second[0].id
    assert await store.events.oldest_available() == ids[0]

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        third = await reopened.events.append_events([event(3, "c0"), event(3, "a0")])
        assert [e.dedup_key for e in third] == ["c0"]  # a0 is stored already, across the restart
        assert third[0].id > second[0].id  # type: ignore[operator]
        assert [e.id for e in await all_events(reopened)] == [*ids, second[0].id, third[0].id]
    finally:
        await reopened.close()


async def test_an_event_is_stored_once_across_calls_and_within_a_batch(store: Store) -> None:
    """Only what was newly stored is returned (the first per key within a batch); a re-detected event,
    even with other values, is neither stored again nor returned."""
    stored = await store.events.append_events([event(1, "x"), event(1, "y"), event(1, "x", symbol="other")])
    assert [(e.dedup_key, e.symbol) for e in stored] == [("x", "XAUUSD"), ("y", "XAUUSD")]
    again = await store.events.append_events([event(1, "y", symbol="changed"), event(1, "z"), event(1, "x")])
    assert [e.dedup_key for e in again] == ["z"]
    assert await store.events.append_events([event(1, "x"), event(1, "z")]) == []
    assert await store.events.append_events([]) == []
    got = await all_events(store)
    assert [(e.dedup_key, e.symbol) for e in got] == [("x", "XAUUSD"), ("y", "XAUUSD"), ("z", "XAUUSD")]
    assert [e.id for e in got] == [*(e.id for e in stored), again[0].id]


async def test_an_input_id_is_ignored(store: Store) -> None:
    [e] = await store.events.append_events([dataclasses.replace(event(1, "k"), id=10**6)])
    assert e.id != 10**6
    assert [x.id for x in await all_events(store)] == [e.id]


async def test_filters_limit_and_cursor(store: Store) -> None:
    kinds = [OPENED, UPDATED, CLOSED]
    await store.events.append_events(
        [event(100 + i % 3, f"k{i}", kinds[i % 3] if i % 2 else OPENED) for i in range(30)]
    )
    everything = await all_events(store)
    ids = [e.id for e in everything]
    assert len(ids) == 30 and ids == sorted(ids)

    page = await store.events.list_events(limit=7)
    assert page == everything[:7]
    cursor, pages = 0, []
    while batch := await store.events.list_events(after=cursor, limit=7):
        pages.extend(batch)
        cursor = batch[-1].id  # type: ignore[assignment]
    assert pages == everything
    assert await store.events.list_events(after=ids[-1], limit=10) == []
    assert await store.events.list_events(after=ids[10], limit=3) == everything[11:14]

    assert await all_events(store, accounts={101}) == [e for e in everything if e.account == 101]
    assert await all_events(store, accounts={100, 102, 999}) == [e for e in everything if e.account != 101]
    assert await all_events(store, types={CLOSED}) == [e for e in everything if e.type is CLOSED]
    both = await all_events(store, accounts={101}, types={UPDATED, CLOSED}, after=ids[5])
    assert both == [e for e in everything[6:] if e.account == 101 and e.type in (UPDATED, CLOSED)]
    assert both  # the filters select something
    limited = await store.events.list_events(limit=2, types={OPENED}, after=ids[3])
    assert limited == [e for e in everything[4:] if e.type is OPENED][:2]

    assert await store.events.dedup_keys() == [e.dedup_key for e in everything]
    assert await store.events.dedup_keys(accounts={101, 7}) == [
        e.dedup_key for e in everything if e.account == 101
    ]
    assert await store.events.dedup_keys(accounts=set()) == []
    assert await all_events(store, accounts=set()) == []
    assert await all_events(store, types=set()) == []
    assert await store.events.list_events(limit=0) == []
    with pytest.raises(ValueError):
        await store.events.list_events(limit=-1)
    with pytest.raises(ValueError):
        await store.events.list_events(after=-1, limit=5)


async def test_retention_drops_a_prefix_and_ids_are_never_reused(store: Store, backend: Backend) -> None:
    sec = timedelta(seconds=1)
    appended = await store.events.append_events(
        [event(1, f"k{i}", detected_at=T0 + i * sec) for i in range(10)]
    )
    ids = [e.id for e in appended]

    assert await store.events.prune_events() == 0
    assert await store.events.prune_events(max_events=20) == 0
    assert await store.events.prune_events(keep_after=T0 - sec) == 0
    assert not cursor_expired(0, await store.events.oldest_available(), await store.events.latest_id())
    assert await store.events.prune_events(max_events=8) == 2
    assert await store.events.oldest_available() == ids[2]
    latest = await store.events.latest_id()
    assert cursor_expired(0, ids[2], latest) and cursor_expired(ids[0], ids[2], latest)
    assert not cursor_expired(ids[1], ids[2], latest)  # the next page starts at the oldest retained
    assert await store.events.prune_events(keep_after=T0 + 4 * sec + timedelta(microseconds=500)) == 2
    assert await store.events.oldest_available() == ids[4]  # detected at T0+4s (ms precision) is kept
    assert await store.events.prune_events(keep_after=T0 + 6 * sec, max_events=5) == 2  # whichever drops more
    assert [e.id for e in await all_events(store)] == ids[6:]
    assert await store.events.list_events(after=0, limit=2) == appended[6:8]

    # Out of order detection times: still a prefix, up to the first event (by id) to keep.
    late = await store.events.append_events(
        [event(1, "old-clock", detected_at=T0), event(1, "new", detected_at=T0 + 60 * sec)]
    )
    assert await store.events.prune_events(keep_after=T0 + 9 * sec) == 3  # ids[6:9]
    assert [e.id for e in await all_events(store)] == [ids[9], late[0].id, late[1].id]

    assert await store.events.prune_events(max_events=0) == 3
    assert await store.events.oldest_available() is None
    assert await store.events.latest_id() == late[1].id  # the last ever assigned
    assert cursor_expired(ids[9], None, late[1].id) and not cursor_expired(late[1].id, None, late[1].id)

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.events.latest_id() == late[1].id
        [fresh] = await reopened.events.append_events([event(1, "after-prune")])
        assert fresh.id > late[1].id  # type: ignore[operator]
        assert await reopened.events.oldest_available() == fresh.id
        # A pruned event is never stored again (a restart re-detecting an old change): its key is kept.
        assert await reopened.events.append_events([event(1, "k0"), event(1, "old-clock")]) == []
        assert await reopened.events.dedup_keys() == [
            *(f"k{i}" for i in range(10)),
            "old-clock",
            "new",
            "after-prune",
        ]
        assert await reopened.events.dedup_keys(accounts={2}) == []
        assert await reopened.events.prune_events(max_events=0) == 1  # keys kept once, pruning again is fine
        assert len(await reopened.events.dedup_keys(accounts={1})) == 13
        with pytest.raises(ValueError):
            await reopened.events.prune_events(max_events=-1)
    finally:
        await reopened.close()


async def test_a_thousand_events_in_one_call(store: Store) -> None:
    events = [event(1 + i % 20, f"deal:{i}", data={"i": i, "pnl": i / 7}) for i in range(1000)]
    started = time.perf_counter()
    stored = await store.events.append_events(events)
    elapsed = time.perf_counter() - started
    ids = [e.id for e in stored]
    assert len(ids) == 1000 and ids == list(range(ids[0], ids[0] + 1000))  # type: ignore[arg-type]  # one claim
    assert elapsed < 5.0, elapsed
    assert await store.events.append_events(events) == []
    assert len(await all_events(store)) == 1000
    assert (await store.events.list_events(after=ids[499], limit=1))[0].data == {"i": 500, "pnl": 500 / 7}


async def test_concurrent_writers_never_share_an_id_or_store_a_key_twice(
    store: Store, backend: Backend
) -> None:
    """Two store objects on one database (shards) and concurrent appends within each: every key once,
    every id unique, and each call's ids increasing."""
    other = backend.make()
    await other.open()
    try:

        async def writer(s: Store, w: int) -> list[list[TradeEvent]]:
            out = []
            for round_ in range(8):
                batch = [event(1, f"k{round_}-{i}") for i in range(w, w + 30)]  # overlaps the others
                out.append(await s.events.append_events(batch))
            return out

        results = await asyncio.gather(
            writer(store, 0), writer(store, 10), writer(other, 20), writer(other, 5)
        )
    finally:
        await other.close()
    returned = [e for per_writer in results for call in per_writer for e in call]
    for per_writer in results:
        for call in per_writer:
            assert [e.id for e in call] == sorted(e.id for e in call)  # type: ignore[type-var]
    keys = [e.dedup_key for e in returned]
    assert len(keys) == len(set(keys)) == 8 * 50  # k{round}-0..49, each stored by exactly one writer
    ids = [e.id for e in returned]
    assert len(set(ids)) == len(ids)
    stored = await all_events(store)
    assert sorted(e.dedup_key for e in stored) == sorted(keys)
    assert sorted(e.id for e in stored) == sorted(ids)  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ({"pnl": float("nan")}, r"data.pnl is not a finite number"),
        ({"a": [1, {"b": float("inf")}]}, r"data.a\[1\].b is not a finite number"),
        ({"n": 2**64}, "data.n does not fit in 64 bits"),
        ({"when": datetime(2025, 1, 1)}, "data.when is a datetime"),
        ({"s": {1, 2}}, "data.s is a set"),
        ({"$set": 1}, "key MongoDB cannot hold"),
        ({"a\x00b": 1}, "key MongoDB cannot hold"),
        ({1: "x"}, "non-text key"),
        ({"s": "\udcff"}, "data.s is not valid Unicode"),
    ],
)
async def test_data_the_store_cannot_hold_is_refused_naming_the_account(
    store: Store, data: dict[Any, Any], why: str
) -> None:
    with pytest.raises(StoreRejected, match=why) as err:
        await store.events.append_events([event(1, "ok"), event(2, "bad", data=data), event(3, "ok2")])
    assert err.value.accounts == {2}
    assert await all_events(store) == []  # nothing written
    assert await store.events.latest_id() == 0


async def test_other_refusals(store: Store) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(40):
        node["x"] = node = {}
    with pytest.raises(StoreRejected, match="nested deeper") as err:
        await store.events.append_events([event(5, "deep", data=deep)])
    assert err.value.accounts == {5}
    with pytest.raises(StoreRejected, match="account does not fit") as err:
        await store.events.append_events([event(2**64, "big")])
    assert err.value.accounts == {2**64}
    with pytest.raises(StoreRejected, match="identifier does not fit"):
        await store.events.append_events([event(1, "big-id", identifier=-(2**63) - 1)])
    with pytest.raises(StoreRejected, match="data is not a JSON object"):
        await store.events.append_events([event(1, "list", data=[1, 2])])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dedup_key"):
        await store.events.append_events([event(1, "")])
    assert await all_events(store) == []


async def test_a_reader_following_the_cursor_misses_nothing_while_one_store_appends(store: Store) -> None:
    """Concurrent appends through one store object commit in id order, so a client polling with
    `after` = the last id it saw never skips an event committed later with a lower id."""
    done = asyncio.Event()
    seen: list[int] = []

    async def writer(w: int) -> None:
        for round_ in range(10):
            await store.events.append_events([event(1, f"w{w}-{round_}-{i}") for i in range(20)])

    async def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            batch = await store.events.list_events(after=cursor, limit=1000)
            seen.extend(e.id for e in batch)  # type: ignore[misc]
            cursor = batch[-1].id if batch else cursor  # type: ignore[assignment]
            if finished and not batch:
                return
            await asyncio.sleep(0)

    async def writers() -> None:
        await asyncio.gather(*(writer(w) for w in range(4)))
        done.set()

    await asyncio.gather(writers(), reader())
    everything = [e.id for e in await all_events(store)]
    assert len(everything) == 4 * 10 * 20
    assert seen == everything


async def test_an_event_type_from_a_newer_agent_is_skipped(store: Store, backend: Backend) -> None:
    """Stored events outlive the code: a type this version does not know is left out of reads, never
    read as another type; ids after it still increase."""
    [known] = await store.events.append_events([event(1, "known")])
    assert known.id is not None
    newer = {
        "dedup_key": "teleport",
        "account": 1,
        "identifier": 5,
        "type": "TRADE_TELEPORTED",
        "time": T0,
        "detected_at": T0,
        "symbol": "X",
        "data": {},
    }
    backend.put_raw_event(known.id + 1, newer)
    assert await all_events(store) == [known]
    [later] = await store.events.append_events([event(1, "later")])
    assert later.id > known.id + 1  # type: ignore[operator]
    assert await all_events(store) == [known, later]


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
)
_keys = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6).filter(
    lambda k: not k.startswith("$")
)
_json_objects = st.dictionaries(
    _keys,
    st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
        max_leaves=12,
    ),
    max_size=6,
)
_keys_seen = itertools.count()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_json_objects)
async def test_any_json_object_round_trips_exactly(store: Store, data: dict[str, Any]) -> None:
    key = f"prop-{next(_keys_seen)}"  # the store outlives one example
    [returned] = await store.events.append_events([event(1, key, data=data)])
    [got] = await store.events.list_events(after=returned.id - 1, limit=1)  # type: ignore[operator]
    assert got == returned
    assert repr(got.data) == repr(data)  # exact floats (-0.0 too), ints stay ints, key order kept
