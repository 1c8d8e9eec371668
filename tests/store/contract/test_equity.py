"""The equity history contract (`store.equity`, `mt5_equity`): points keyed by (account, time), so a point
recorded twice is stored once; read by account and time range in time order; pruned by age."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.domain.equity import EquityPoint
from agent.store.base import EquityStore, Store, StoreRejected

from ..conftest import Backend
from ..factories import T0, ms

S = timedelta(seconds=1)


def point(account: int, time: datetime, equity: float, balance: float | None = 1000.0) -> EquityPoint:
    return EquityPoint(account, time, equity, balance)


async def test_points_round_trip_in_time_order_per_account(store: Store, backend: Backend) -> None:
    assert isinstance(store.equity, EquityStore)
    points = [
        point(1, T0 + 2 * S, 1001.5),
        point(1, T0, 1000.25, None),  # a source that sent no balance
        point(2, T0 + S, 50.0, 49.0),
        point(1, T0 + S + timedelta(microseconds=999), 0.1 + 0.2, -5.0),  # floored to the ms
        point(2**63 - 1, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), -12.5),
    ]
    await store.equity.put_equity(points)
    got = await store.equity.get_equity(1)
    assert got == [
        point(1, ms(T0), 1000.25, None),
        point(1, ms(T0 + S), 0.1 + 0.2, -5.0),
        point(1, ms(T0 + 2 * S), 1001.5),
    ]
    assert all(p.time.tzinfo is UTC for p in got)
    assert await store.equity.get_equity(2) == [point(2, ms(T0 + S), 50.0, 49.0)]
    far = await store.equity.get_equity(2**63 - 1)
    assert far == [point(2**63 - 1, datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC), -12.5)]
    assert await store.equity.get_equity(3) == []

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.equity.get_equity(1) == got
    finally:
        await reopened.close()


async def test_range_is_since_inclusive_until_exclusive(store: Store) -> None:
    await store.equity.put_equity([point(1, T0 + i * S, 100.0 + i) for i in range(5)])
    got = await store.equity.get_equity(1, since=T0 + S, until=T0 + 3 * S)
    assert [p.equity for p in got] == [101.0, 102.0]
    assert [p.equity for p in await store.equity.get_equity(1, since=T0 + 3 * S)] == [103.0, 104.0]
    assert [p.equity for p in await store.equity.get_equity(1, until=T0 + S)] == [100.0]
    assert await store.equity.get_equity(1, since=T0 + 9 * S) == []


async def test_a_point_recorded_twice_is_stored_once_the_last_winning(store: Store) -> None:
    await store.equity.put_equity([point(1, T0, 100.0)])
    await store.equity.put_equity(
        [point(1, T0 + timedelta(microseconds=500), 101.0), point(1, T0 + S, 102.0)]
    )
    await store.equity.put_equity([point(1, T0 + S, 103.0, 7.0), point(1, T0 + S, 104.0, 8.0)])
    got = await store.equity.get_equity(1)
    assert got == [point(1, ms(T0), 101.0), point(1, ms(T0 + S), 104.0, 8.0)]


async def test_a_large_batch_is_stored_whole(store: Store) -> None:
    points = [point(a, T0 + i * S, float(i)) for a in (1, 2, 3) for i in range(1200)]  # > one Mongo chunk
    await store.equity.put_equity(points)
    for a in (1, 2, 3):
        got = await store.equity.get_equity(a)
        assert [p.equity for p in got] == [float(i) for i in range(1200)]


async def test_prune_drops_every_accounts_older_points_only(store: Store) -> None:
    await store.equity.put_equity([point(a, T0 + i * S, float(i)) for a in (1, 2) for i in range(10)])
    assert await store.equity.prune_equity(T0 + 4 * S) == 8
    assert [p.equity for p in await store.equity.get_equity(1)] == [float(i) for i in range(4, 10)]
    assert [p.equity for p in await store.equity.get_equity(2)] == [float(i) for i in range(4, 10)]
    assert await store.equity.prune_equity(T0 + 4 * S) == 0
    assert await store.equity.prune_equity(T0 + 100 * S) == 12
    assert await store.equity.get_equity(1) == []


@pytest.mark.parametrize(
    ("refused", "why"),
    [
        (point(2, T0, float("nan")), "equity is not a finite number"),
        (point(2, T0, 1.0, float("inf")), "balance is not a finite number"),
        (point(2**63, T0, 1.0), "account does not fit in 64 bits"),
    ],
)
async def test_a_value_the_store_cannot_hold_is_refused_and_nothing_written(
    store: Store, refused: EquityPoint, why: str
) -> None:
    with pytest.raises(StoreRejected, match=why) as err:
        await store.equity.put_equity([point(1, T0, 5.0), refused, point(3, T0, 6.0)])
    assert err.value.accounts == {refused.account}
    assert await store.equity.get_equity(1) == []
    assert await store.equity.get_equity(3) == []
