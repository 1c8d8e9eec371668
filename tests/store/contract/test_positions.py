"""The positions contract (`store.positions`, `mt5_positions`): the last known open positions per account,
replaced whole, read back exactly, with `as_of_event_id` for the API's resume point."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from agent.domain.trades import PositionsSnapshot, PositionType
from agent.store.base import Store, StoreRejected

from ..conftest import Backend
from ..factories import T0, ms
from ..trade_factories import event, position, snapshot


def stored(s: PositionsSnapshot, as_of_event_id: int) -> PositionsSnapshot:
    """What a store gives back: times at ms, the event id it recorded."""
    return dataclasses.replace(
        s,
        as_of=ms(s.as_of),
        as_of_event_id=as_of_event_id,
        positions=tuple(
            dataclasses.replace(p, time=ms(p.time), time_update=ms(p.time_update)) for p in s.positions
        ),
    )


async def test_a_snapshot_round_trips_every_field(store: Store, backend: Backend) -> None:
    snap = snapshot(
        891215,
        position(891215, 11),
        position(891215, 3, type=PositionType.BUY, sl=0.0, tp=1.1, comment="", magic=0, volume=1e-8),
        position(891215, 2**62, ticket=2**63 - 1, magic=-(2**63), profit=-0.0, price_current=1e300),
        as_of=T0.replace(microsecond=999999),
    )
    assert await store.positions.get_positions(891215) is None

    returned = await store.positions.replace_positions(891215, snap)
    assert returned == stored(snap, 0)
    got = await store.positions.get_positions(891215)
    assert got == stored(snap, 0)
    assert got is not None
    assert [p.identifier for p in got.positions] == [11, 3, 2**62]  # the order given
    first = got.positions[0]
    assert (
        first.volume == 0.1 + 0.2
        and type(first.type) is PositionType
        and first.time.utcoffset() == timedelta(0)
    )

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.positions.get_positions(891215) == stored(snap, 0)
    finally:
        await reopened.close()


async def test_replace_swaps_the_whole_set_and_keeps_an_empty_one(store: Store) -> None:
    await store.positions.replace_positions(1, snapshot(1, position(1, 10), position(1, 11)))
    await store.positions.replace_positions(2, snapshot(2, position(2, 20)))
    later = snapshot(1, position(1, 11, sl=1.2), position(1, 12), as_of=T0 + timedelta(seconds=1))
    await store.positions.replace_positions(1, later)

    got = await store.positions.get_positions(1)
    assert got == stored(later, 0)  # 10 gone, 11 changed, 12 new
    await store.positions.replace_positions(1, snapshot(1, as_of=T0 + timedelta(seconds=2)))
    empty = await store.positions.get_positions(1)
    assert empty is not None and empty.positions == () and empty.as_of == T0 + timedelta(seconds=2)

    everything = await store.positions.get_all_positions()
    assert list(everything) == [1, 2]
    assert everything[2] == stored(snapshot(2, position(2, 20)), 0)
    assert everything[1].positions == ()


async def test_as_of_event_id_is_the_latest_event_unless_given(store: Store) -> None:
    await store.events.append_events([event(1, "a"), event(1, "b")])
    latest = await store.events.latest_id()
    got = await store.positions.replace_positions(1, snapshot(1, position(1, 10)))
    assert got.as_of_event_id == latest
    assert (await store.positions.get_positions(1)).as_of_event_id == latest  # type: ignore[union-attr]

    given = await store.positions.replace_positions(2, snapshot(2, as_of_event_id=1))
    assert given.as_of_event_id == 1
    assert (await store.positions.get_positions(2)).as_of_event_id == 1  # type: ignore[union-attr]


async def test_readers_see_the_old_set_or_the_new_never_a_mix(store: Store) -> None:
    a = snapshot(1, *(position(1, i) for i in range(1, 200)))
    b = snapshot(1, *(position(1, i, sl=2.0) for i in range(200, 400)), as_of=T0 + timedelta(seconds=1))
    await store.positions.replace_positions(1, a)
    seen: set[tuple[int, ...]] = set()

    async def writer() -> None:
        for i in range(10):
            await store.positions.replace_positions(1, b if i % 2 == 0 else a)

    async def reader() -> None:
        for _ in range(20):
            got = await store.positions.get_positions(1)
            assert got is not None
            seen.add(tuple(p.identifier for p in got.positions))

    await asyncio.gather(writer(), reader())
    assert seen <= {tuple(range(1, 200)), tuple(range(200, 400))}


async def test_another_accounts_positions_are_a_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="another account"):
        await store.positions.replace_positions(1, snapshot(2, position(2, 5)))
    with pytest.raises(ValueError, match="another account"):
        await store.positions.replace_positions(1, snapshot(1, position(1, 5), position(2, 6)))
    assert await store.positions.get_all_positions() == {}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"profit": float("nan")}, "profit is not a finite number"),
        ({"price_current": float("inf")}, "price_current is not a finite number"),
        ({"magic": 2**64}, "magic does not fit in 64 bits"),
        ({"symbol": "EUR\ud800"}, "symbol is not valid Unicode"),
    ],
)
async def test_a_value_the_store_cannot_hold_is_refused(
    store: Store, bad: dict[str, object], why: str
) -> None:
    await store.positions.replace_positions(7, snapshot(7, position(7, 1)))
    with pytest.raises(StoreRejected, match=why) as err:
        await store.positions.replace_positions(7, snapshot(7, position(7, 2), position(7, 3, **bad)))
    assert err.value.accounts == {7}
    assert await store.positions.get_positions(7) == stored(snapshot(7, position(7, 1)), 0)  # kept
