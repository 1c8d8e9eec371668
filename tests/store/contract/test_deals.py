"""The deals contract (`store.deals`, `mt5_deals`): upserted by (account, ticket), so a deal seen twice is
stored once; read by account, time range and position."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from agent.domain.trades import Deal, DealEntry, DealReason, DealType
from agent.store.base import Store, StoreRejected

from ..conftest import Backend
from ..factories import T0, ms
from ..trade_factories import deal

S = timedelta(seconds=1)


def stored(d: Deal) -> Deal:
    return dataclasses.replace(d, time=ms(d.time))


async def test_a_deal_round_trips_every_field(store: Store, backend: Backend) -> None:
    deals = [
        deal(1, 10),
        deal(
            1,
            2**63 - 1,
            order=0,
            type=DealType.SELL,
            entry=DealEntry.OUT_BY,
            reason=DealReason.SO,
            volume=0.1 + 0.2,
            profit=-1234.5678,
            swap=-0.0,
            fee=0.0,
            commission=-(2**-30),
            position_id=2**62,
            magic=-5,
            comment="[sl 2651.00] ✓",
        ),
        deal(1, 11, type=DealType.BALANCE, entry=DealEntry.IN, position_id=0, symbol="", profit=5000.0),
    ]
    await store.deals.put_deals(deals)
    got = await store.deals.get_deals(1)
    assert got == sorted((stored(d) for d in deals), key=lambda d: (d.time, d.ticket))
    by_ticket = {d.ticket: d for d in got}
    assert type(by_ticket[2**63 - 1].entry) is DealEntry and by_ticket[2**63 - 1].entry is DealEntry.OUT_BY
    assert by_ticket[2**63 - 1].volume == 0.1 + 0.2

    await store.close()
    reopened = backend.make()
    await reopened.open()
    try:
        assert await reopened.deals.get_deals(1) == got
    finally:
        await reopened.close()


async def test_the_same_deal_twice_is_stored_once(store: Store) -> None:
    first = deal(1, 10)
    await store.deals.put_deals([first, deal(2, 10)])  # same ticket, other account: another deal
    await store.deals.put_deals([first])
    corrected = deal(1, 10, commission=-2.0)
    await store.deals.put_deals([deal(1, 10, commission=-9.0), corrected])  # the last in a batch wins
    assert await store.deals.get_deals(1) == [stored(corrected)]
    assert await store.deals.get_deals(2) == [stored(deal(2, 10))]
    await store.deals.put_deals([])


async def test_deals_by_time_range_and_position(store: Store) -> None:
    deals = [deal(1, t, time=T0 + t * S, position_id=100 + t % 2) for t in range(10)]
    deals.append(deal(1, 99, time=T0 + 3 * S, position_id=100))  # same time as ticket 3: ordered by ticket
    deals.append(deal(2, 50, time=T0 + 3 * S, position_id=100))
    await store.deals.put_deals(deals[::-1])

    async def tickets(account: int = 1, **kw: object) -> list[int]:
        return [d.ticket for d in await store.deals.get_deals(account, **kw)]  # type: ignore[arg-type]

    assert await tickets() == [0, 1, 2, 3, 99, 4, 5, 6, 7, 8, 9]
    assert await tickets(since=T0 + 3 * S, until=T0 + 6 * S) == [3, 99, 4, 5]  # since <= time < until
    assert await tickets(since=T0 + 8 * S) == [8, 9]
    assert await tickets(until=T0 + 2 * S) == [0, 1]
    assert await tickets(since=T0 + 3 * S + timedelta(microseconds=999)) == [3, 99, 4, 5, 6, 7, 8, 9]  # ms
    assert await tickets(position_id=101) == [1, 3, 5, 7, 9]
    assert await tickets(position_id=100, since=T0 + 3 * S, until=T0 + 7 * S) == [99, 4, 6]
    assert await tickets(2) == [50]
    assert await tickets(3) == []

    assert await store.deals.latest_deal_time(1) == T0 + 9 * S
    assert await store.deals.latest_deal_time(2) == T0 + 3 * S
    assert await store.deals.latest_deal_time(3) is None


async def test_a_thousand_deals_in_one_call(store: Store) -> None:
    deals = [deal(1 + t % 3, t, position_id=t // 10) for t in range(1000)]
    await store.deals.put_deals(deals)
    await store.deals.put_deals(deals)
    assert len(await store.deals.get_deals(1)) == 334
    assert await store.deals.get_deals(2, position_id=5) == [
        stored(d) for d in deals if d.account == 2 and d.position_id == 5
    ]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"profit": float("nan")}, "profit is not a finite number"),
        ({"volume": float("-inf")}, "volume is not a finite number"),
        ({"position_id": 2**63}, "position_id does not fit in 64 bits"),
        ({"account": 2**64}, "account does not fit in 64 bits"),
    ],
)
async def test_a_value_the_store_cannot_hold_is_refused_naming_the_account(
    store: Store, bad: dict[str, object], why: str
) -> None:
    await store.deals.put_deals([deal(1, 1)])
    kw = dict(bad)
    refused = deal(int(kw.pop("account", 3)), 2, **kw)  # type: ignore[call-overload]
    with pytest.raises(StoreRejected, match=why) as err:
        await store.deals.put_deals([deal(1, 5), refused, deal(2, 6)])
    assert err.value.accounts == {refused.account}
    assert [d.ticket for d in await store.deals.get_deals(1)] == [1]  # nothing written
    assert await store.deals.get_deals(2) == []
