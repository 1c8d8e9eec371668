"""What the MetaAPI source reads is validated into the domain types with the bridge's bounds: account
values (no invented profit), positions and deals (MetaAPI's enum names to MetaQuotes' values), and a
read is live only while the connection is synchronized and connected to the broker.

Against a fake of the SDK's connection and listener interface (tests/sources/metaapi/fake_sdk.py): the
MetaAPI cloud cannot run here, and no test reaches it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.domain.accounts import AccountSnapshot, ReadFailure, Reason
from agent.domain.trades import DealEntry, DealReason, DealType, PositionsSnapshot, PositionType
from agent.sources.base import Source, SourceError
from agent.sources.metaapi.convert import REASON_UNKNOWN, broker_offset
from tests.sources.checks import check_deal, check_position
from tests.sources.metaapi.fake_sdk import FakeCloud, deal, position
from tests.sources.metaapi.support import CALM, make_source, wait_until

LOGIN = 51234567
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def _ready(tmp_path: Path, cloud: FakeCloud, accounts: dict[str, str]):  # type: ignore[no-untyped-def]
    source = make_source(cloud, tmp_path, accounts, bounds=CALM)
    source.start()
    await wait_until(lambda: all(s.synchronized for s in source.connection_states()), what="synchronized")
    return source


async def test_values_positions_and_deals_become_domain_types(tmp_path: Path) -> None:
    cloud = FakeCloud()
    script = cloud.add("acc-1", LOGIN)
    script.positions[7] = position(
        7, type="POSITION_TYPE_SELL", stopLoss=1.2, volume=0.5, unrealizedProfit=-3.0, profit=9.0
    )
    script.positions[8] = position(8, reason="POSITION_REASON_UNKNOWN", comment=None)
    script.deals += [
        deal(70, 7, type="DEAL_TYPE_SELL", orderId=None, commission=None),
        deal(71, 0, type="DEAL_TYPE_BALANCE", entryType=None, volume=None, price=None, symbol=None,
             positionId=None, profit=500.0, time=T0 - timedelta(hours=1)),
        deal(72, 7, type="DEAL_TYPE_BUY", entryType="DEAL_ENTRY_OUT", reason="DEAL_REASON_SL",
             time=T0 + timedelta(minutes=5)),
    ]  # fmt: skip
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1"})
    try:
        assert isinstance(source, Source)
        snap = source.read_account(LOGIN)
        assert isinstance(snap, AccountSnapshot) and snap.live and snap.read_at is not None
        v = snap.values
        assert (v.balance, v.equity, v.margin, v.margin_free, v.leverage) == (
            10_000.0,
            10_050.5,
            120.0,
            9_930.5,
            100,
        )
        assert v.profit is None  # MetaAPI sends none; never equity - balance
        assert (v.currency, v.trade_allowed, snap.name, snap.server) == (
            "USD",
            True,
            "Jane Trader",
            "Demo-Server",
        )

        read = await source.read_positions(LOGIN)
        assert isinstance(read, PositionsSnapshot)
        latest = datetime.now(UTC) + timedelta(seconds=5)
        for p in read.positions:
            check_position(p, LOGIN, latest)
        sell, unknown = read.positions
        assert (sell.identifier, sell.ticket, sell.type, sell.sl, sell.tp) == (
            7,
            7,
            PositionType.SELL,
            1.2,
            0.0,
        )
        assert sell.profit == -3.0  # the open part's profit, as MT5's positions_get reports it
        assert (unknown.reason, unknown.comment) == (REASON_UNKNOWN, "")

        until = datetime.now(UTC)
        deals = await source.read_deals(LOGIN, T0 - timedelta(days=1), until)
        assert isinstance(deals, list) and [d.ticket for d in deals] == [71, 70, 72]  # time order
        for d in deals:
            check_deal(d, LOGIN, latest)
        balance, sell_in, close = deals
        assert (balance.type, balance.entry, balance.volume, balance.position_id) == (
            DealType.BALANCE,
            DealEntry.IN,
            0.0,
            0,
        )
        assert (sell_in.order, sell_in.commission, sell_in.fee) == (0, 0.0, 0.0)
        assert (close.entry, close.reason) == (DealEntry.OUT, int(DealReason.SL))
        window = await source.read_deals(LOGIN, T0 + timedelta(minutes=1), until)
        assert [d.ticket for d in window] == [72]
    finally:
        await source.close()


@pytest.mark.parametrize(
    ("bad", "reason", "needle"),
    [
        ({"volume": float("nan")}, Reason.INVALID_PAYLOAD, "position 9: volume"),
        ({"type": "POSITION_TYPE_SIDEWAYS"}, Reason.INVALID_PAYLOAD, "position 9: type"),
        ({"symbol": "EUR\x00USD"}, Reason.INVALID_PAYLOAD, "position 9: symbol"),
        ({"time": datetime(2026, 1, 5, 9, 0)}, Reason.INVALID_PAYLOAD, "position 9: time has no time zone"),
        (
            {"updateTime": datetime.now(UTC) + timedelta(hours=1)},
            Reason.INVALID_PAYLOAD,
            "position 9: updateTime",
        ),
        ({"openPrice": None}, Reason.INVALID_PAYLOAD, "position 9: openPrice is missing"),
    ],
)
async def test_an_invalid_position_fails_the_read_naming_it(
    tmp_path: Path, bad: dict[str, object], reason: Reason, needle: str
) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN).positions[9] = position(9, **bad)
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1"})
    try:
        read = await source.read_positions(LOGIN)
        assert isinstance(read, ReadFailure) and read.reason is reason and needle in read.message, read
    finally:
        await source.close()


async def test_account_of_another_login_is_a_mismatch_and_bad_values_invalid(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN).info["login"] = 99
    cloud.add("acc-2", 51234568).info["balance"] = float("inf")
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1", "51234568": "acc-2"})
    try:
        reads = await source.read_accounts([LOGIN, 51234568, 5], deadline=1.0)
        first, second, unmapped = (reads.results[a] for a in (LOGIN, 51234568, 5))
        assert isinstance(first, ReadFailure) and first.reason is Reason.ACCOUNT_MISMATCH
        assert isinstance(second, ReadFailure) and second.reason is Reason.INVALID_PAYLOAD
        assert isinstance(unmapped, ReadFailure) and unmapped.reason is Reason.NOT_FOUND
    finally:
        await source.close()


async def test_health_and_reads_follow_the_connection_state(tmp_path: Path) -> None:
    cloud = FakeCloud()
    cloud.add("acc-1", LOGIN)
    cloud.add("acc-2", 51234568, never_sync=100)
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1"})
    try:
        health = await source.health()
        assert health.usable and health.status == "healthy" and source.positions_supported(health)
        listing = await source.list_accounts()
        assert [(a.account, a.name, a.currency) for a in listing.accounts] == [(LOGIN, "Jane Trader", "USD")]
        conn = cloud.current("acc-1")
        await conn.emit("on_broker_connection_status_changed", False)
        state = source.connection_states()[0]
        assert (state.connected, state.connected_to_broker, state.synchronized) == (True, False, True)
        read = source.read_account(LOGIN)
        assert isinstance(read, ReadFailure) and read.reason is Reason.NO_LIVE_DATA
        deals = await source.read_deals(LOGIN, T0, datetime.now(UTC))
        assert deals == []  # history is the cloud's: readable without the broker link
        with pytest.raises(SourceError) as down:
            await source.health()
        assert down.value.reason is Reason.CONNECTION
        await conn.emit("on_broker_connection_status_changed", True)
        assert isinstance(source.read_account(LOGIN), AccountSnapshot)
        many = {a: r async for a, r in source.read_positions_many([LOGIN, 5], 1.0)}
        assert isinstance(many[LOGIN], PositionsSnapshot) and isinstance(many[5], ReadFailure)
    finally:
        await source.close()
    two = make_source(cloud, tmp_path, {str(LOGIN): "acc-1", "51234568": "acc-2"})
    try:
        two.start()
        await wait_until(lambda: two.connection_states()[0].synchronized, what="first synchronized")
        health = await two.health()
        assert health.status == "degraded" and health.usable
        assert two.connection_states()[1].synchronized is False
    finally:
        await two.close()


async def test_positions_not_resent_on_a_hash_match_come_from_the_terminal_state(tmp_path: Path) -> None:
    cloud = FakeCloud()
    script = cloud.add("acc-1", LOGIN, hash_sync=True)
    script.positions[5] = position(5)
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1"})
    try:
        read = await source.read_positions(LOGIN)
        assert isinstance(read, PositionsSnapshot) and [p.identifier for p in read.positions] == [5]
    finally:
        await source.close()


async def test_the_broker_offset_is_learned_from_broker_times(tmp_path: Path) -> None:
    """Issue 14's broker days: `brokerTime` beside `time` tells the broker's UTC offset (positions, then
    the newest deal); an odd `brokerTime` is ignored and never fails a read."""
    cloud = FakeCloud()
    script = cloud.add("acc-1", LOGIN)
    script.positions[7] = position(7)  # 09:00 UTC, broker 11:00: +2 h
    script.positions[8] = position(8, brokerTime="not a time")
    script.deals += [
        deal(70, 7),  # 09:00 UTC, broker 11:00
        deal(71, 7, entryType="DEAL_ENTRY_OUT", time=T0 + timedelta(minutes=5),
             brokerTime="2026-01-05 12:05:00.000"),  # the newest: +3 h (the broker moved its clock)
        deal(72, 7, time=T0 - timedelta(minutes=5), brokerTime=None),
    ]  # fmt: skip
    source = await _ready(tmp_path, cloud, {str(LOGIN): "acc-1"})
    try:
        assert source.broker_utc_offsets == {}
        assert isinstance(await source.read_positions(LOGIN), PositionsSnapshot)
        assert source.broker_utc_offsets == {LOGIN: 120}
        deals = await source.read_deals(LOGIN, T0 - timedelta(days=1), datetime.now(UTC))
        assert isinstance(deals, list) and len(deals) == 3
        assert source.broker_utc_offsets == {LOGIN: 180}
    finally:
        await source.close()


@pytest.mark.parametrize(
    ("item", "told"),
    [
        ({"time": T0, "brokerTime": "2026-01-05 11:00:00.000"}, (T0, 120)),
        ({"time": "2026-01-05T09:00:00.000Z", "brokerTime": "2026-01-05 05:30:00.123"}, (T0, -210)),
        ({"time": T0, "brokerTime": "2026-01-05 09:07:00.000"}, (T0, 0)),  # to the quarter hour
        ({"time": T0, "brokerTime": "2026-01-06 09:00:00.000"}, None),  # +24 h: no broker is
        ({"time": datetime(2026, 1, 5, 9, 0), "brokerTime": "2026-01-05 11:00:00.000"}, None),  # naive
        ({"time": T0, "brokerTime": 20260105}, None),
        ({"time": T0}, None),
        ("not a mapping", None),
    ],
)
def test_broker_offset_of_one_item(item: object, told: tuple[datetime, int] | None) -> None:
    assert broker_offset(item) == told
