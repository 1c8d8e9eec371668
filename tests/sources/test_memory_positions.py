"""MemorySource's scripted positions and deals: what the events detector and poller will be driven
with, so it must behave like the bridge source (snapshots, windows, failures, deadlines, no support)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agent.domain.accounts import Reason
from agent.domain.trades import DealEntry, DealType, PositionsSnapshot, PositionType
from agent.sources import POSITIONS_FEATURE, POSITIONS_UNAVAILABLE, Source, SourceHealth
from agent.sources.base import ReadFailure
from agent.sources.memory import MemorySource, deal, position
from tests.sources.checks import check_deal, check_position

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=3)


def _source() -> MemorySource:
    src = MemorySource(clock=lambda: NOW)
    src.set(1001)
    src.set(1002)
    return src


async def test_positions_are_scripted_per_account() -> None:
    src = _source()
    assert isinstance(src, Source) and src.positions_supported()
    empty = await src.read_positions(1001)
    assert empty == PositionsSnapshot(account=1001, as_of=NOW, positions=())
    p1 = position(1001, 11, volume=0.3, sl=1.05)
    p2 = position(1001, 12, type=PositionType.SELL, symbol="XAUUSD")
    src.set_positions(1001, [p1, p2])
    snap = await src.read_positions(1001)
    assert isinstance(snap, PositionsSnapshot) and snap.positions == (p1, p2) and snap.as_of == NOW
    for p in snap.positions:
        check_position(p, 1001, NOW)
    src.set_positions(1001, [p2], as_of=T0)
    snap = await src.read_positions(1001)
    assert isinstance(snap, PositionsSnapshot) and snap.positions == (p2,) and snap.as_of == T0
    assert await src.read_positions(1002) == PositionsSnapshot(1002, NOW, ())
    with pytest.raises(ValueError, match="another account"):
        src.set_positions(1002, [p1])
    assert src.calls.count("positions") == 4


async def test_deals_are_a_history_read_by_window() -> None:
    src = _source()
    opened = deal(1001, 501, 11, time=T0)
    closed = deal(
        1001, 502, 11, time=T0 + timedelta(hours=1), type=DealType.SELL, entry=DealEntry.OUT, profit=5.0
    )
    deposit = deal(1001, 503, 0, time=T0 + timedelta(hours=2), type=DealType.BALANCE, symbol="", volume=0.0)
    src.add_deals(1001, closed, deposit, opened)
    everything = await src.read_deals(1001, T0, NOW)
    assert everything == [opened, closed, deposit]  # by time, then ticket
    for d in everything:
        check_deal(d, 1001, NOW)
    # Both ends inclusive, like MT5's history_deals_get.
    assert await src.read_deals(1001, T0 + timedelta(hours=1), T0 + timedelta(hours=2)) == [closed, deposit]
    assert await src.read_deals(1001, NOW, NOW + timedelta(hours=1)) == []
    # The same ticket again replaces its deal (a source sending a change twice stays one deal).
    src.add_deals(
        1001, deal(1001, 502, 11, time=closed.time, type=DealType.SELL, entry=DealEntry.OUT, profit=6.0)
    )
    again = await src.read_deals(1001, T0, NOW)
    assert isinstance(again, list) and len(again) == 3 and again[1].profit == 6.0
    assert await src.read_deals(1002, T0, NOW) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        await src.read_deals(1001, datetime(2026, 1, 1), NOW)


async def test_failures_are_per_account_and_per_kind() -> None:
    src = _source()
    src.set_positions(1002, [position(1002, 21)])
    src.fail_positions(1001, Reason.LOGIN_FAILED)
    src.fail_deals(1002, Reason.INVALID_PAYLOAD, "deals[3].volume is not a volume")
    failed = await src.read_positions(1001)
    assert isinstance(failed, ReadFailure) and failed.reason is Reason.LOGIN_FAILED
    assert isinstance(await src.read_positions(1002), PositionsSnapshot)
    assert await src.read_deals(1001, T0, NOW) == []
    bad = await src.read_deals(1002, T0, NOW)
    assert isinstance(bad, ReadFailure) and bad.reason is Reason.INVALID_PAYLOAD and "deals[3]" in bad.message
    src.fail_positions(1001, None)
    src.fail_deals(1002, None)
    assert isinstance(await src.read_positions(1001), PositionsSnapshot)
    assert await src.read_deals(1002, T0, NOW) == []
    unknown = await src.read_positions(9)
    assert isinstance(unknown, ReadFailure) and unknown.reason is Reason.NOT_FOUND
    # set_positions clears a scripted failure, as `set` does for account reads.
    src.fail_positions(1001, Reason.TIMEOUT)
    src.set_positions(1001, [])
    assert isinstance(await src.read_positions(1001), PositionsSnapshot)


async def test_latency_past_the_deadline_is_a_timeout() -> None:
    src = _source()
    src.set(1001, latency=5.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow, fast = await asyncio.gather(src.read_positions(1001, deadline=0.05), src.read_positions(1002, 0.05))
    assert loop.time() - started < 2.0
    assert isinstance(slow, ReadFailure) and slow.reason is Reason.TIMEOUT
    assert isinstance(fast, PositionsSnapshot)
    late = await src.read_deals(1001, T0, NOW, deadline=0.05)
    assert isinstance(late, ReadFailure) and late.reason is Reason.TIMEOUT


async def test_without_the_feature_it_is_a_source_without_positions() -> None:
    src = _source()
    src.health_status = SourceHealth(status="healthy", available=True, features=frozenset({"batch"}))
    assert not src.positions_supported()
    assert not src.positions_supported(await src.health())
    assert src.positions_supported(SourceHealth("healthy", True, frozenset({POSITIONS_FEATURE})))
    for read in (await src.read_positions(1001), await src.read_deals(1001, T0, NOW)):
        assert isinstance(read, ReadFailure) and read.reason is Reason.NOT_FOUND
        assert POSITIONS_UNAVAILABLE in read.message
    # Balances are unaffected.
    reads = await src.read_accounts([1001], 1.0)
    assert not isinstance(reads.results[1001], ReadFailure)
