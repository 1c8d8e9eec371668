"""The positions poller over a MemorySource and a real SQLite store: every change reaches the store once,
across rounds and restarts; one account's failure is its own; rounds never overlap; stop is clean."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.domain.accounts import Reason
from agent.domain.trades import DealEntry, DealType, EventType, TradeEvent
from agent.events.poller import PositionsPoller
from agent.sources.base import POSITIONS_UNAVAILABLE, SourceHealth
from agent.sources.memory import MemorySource, deal, position
from agent.store import open_store
from agent.store.base import Store
from agent.telemetry.registry import AgentMetrics

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
A, B, C = 1001, 1002, 1003


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(store: Store, source: MemorySource, clock: Clock, accounts: list[int], **kw: Any) -> PositionsPoller:
    return PositionsPoller(
        store, source, lambda: accounts, interval=kw.pop("interval", 1.0), clock=clock, **kw
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def all_events(store: Store) -> list[TradeEvent]:
    return await store.events.list_events(limit=10_000)


def kinds(events: list[TradeEvent]) -> list[tuple[int, int, str, str | None]]:
    return [(e.account, e.identifier, e.type.value, e.data.get("change")) for e in events]


async def test_open_update_close_are_stored_exactly_once(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A])
    src.set_positions(A, [position(A, 10, time=at(0), volume=0.2)])
    src.add_deals(A, deal(A, 100, 10, order=10, time=at(0), volume=0.2))
    assert kinds((await poller.run_round()).events) == [(A, 10, "TRADE_OPENED", None)]
    assert (await poller.run_round()).events == []  # the same facts again: nothing new

    clock.at(10)
    src.set_positions(A, [position(A, 10, time=at(0), time_update=at(9), volume=0.2, sl=1.05)])
    assert kinds((await poller.run_round()).events) == [(A, 10, "TRADE_UPDATED", "sl_tp")]

    clock.at(20)  # partial close: the OUT deal leaves 0.1, the position lives on
    src.add_deals(
        A, deal(A, 101, 10, time=at(19), type=DealType.SELL, entry=DealEntry.OUT, volume=0.1, profit=2)
    )
    src.set_positions(A, [position(A, 10, time=at(0), time_update=at(19), volume=0.1, sl=1.05)])
    assert kinds((await poller.run_round()).events) == [(A, 10, "TRADE_UPDATED", "partial_close")]

    clock.at(30)  # closed by hand; the snapshot shows it gone
    src.add_deals(
        A,
        deal(
            A,
            102,
            10,
            time=at(29),
            type=DealType.SELL,
            entry=DealEntry.OUT,
            volume=0.1,
            profit=3,
            commission=-0.5,
        ),
    )
    src.set_positions(A, [])
    (closed,) = (await poller.run_round()).events
    assert closed.type is EventType.TRADE_CLOSED and closed.data["pnl_exact"] == "4.5"
    for _ in range(3):
        assert (await poller.run_round()).events == []

    events = await all_events(store)
    assert [e.type for e in events] == [
        EventType.TRADE_OPENED,
        EventType.TRADE_UPDATED,
        EventType.TRADE_UPDATED,
        EventType.TRADE_CLOSED,
    ]
    assert len({e.dedup_key for e in events}) == 4
    snap = await store.positions.get_positions(A)
    assert snap is not None and snap.positions == () and snap.as_of_event_id == events[-1].id
    assert len(await store.deals.get_deals(A)) == 3


async def test_open_and_close_between_two_polls_come_from_the_deal_sweep(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A])
    src.set_positions(A, [])
    await poller.run_round()
    clock.at(5)
    src.add_deals(
        A,
        deal(A, 200, 20, order=20, time=at(2)),
        deal(A, 201, 20, time=at(3), type=DealType.SELL, entry=DealEntry.OUT, profit=-1),
    )
    assert kinds((await poller.run_round()).events) == [
        (A, 20, "TRADE_OPENED", None),
        (A, 20, "TRADE_CLOSED", None),
    ]


async def test_a_failing_account_does_not_stop_the_others(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = MemorySource(clock=clock)
    metrics = AgentMetrics(runtime=False)
    poller = make(store, src, clock, [A, B, C], listener=metrics)
    for acc in (A, B, C):
        src.set_positions(acc, [position(acc, 10, time=at(0))])
    src.fail_positions(B, Reason.TIMEOUT)
    real = src.read_positions

    async def broken(account: int, deadline: float | None = None) -> Any:
        if account == C:
            raise RuntimeError("a bug in one account's read")
        return await real(account, deadline)

    monkeypatch.setattr(src, "read_positions", broken)
    result = await poller.run_round()
    assert sorted(result.polled) == [A]
    assert set(result.failed) == {B, C}
    # a read that raises is that account's failure, as a bridge source reports it (invalid_payload)
    assert result.failed[B].startswith("timeout") and result.failed[C].startswith("invalid_payload")
    assert "unexpected RuntimeError" in result.failed[C]
    assert kinds(await all_events(store)) == [(A, 10, "TRADE_OPENED", None)]
    value = metrics.registry.get_sample_value
    assert value("mt5_positions_poll_failures_total", {"reason": "timeout", "source": "bridge"}) == 1
    assert value("mt5_positions_poll_failures_total", {"reason": "invalid_payload", "source": "bridge"}) == 1
    assert value("mt5_account_positions_last_poll_timestamp_seconds", {"account": str(A)}) is not None
    assert value("mt5_account_positions_last_poll_timestamp_seconds", {"account": str(B)}) is None

    src.fail_positions(B, None)  # B recovers: its open position is reported then, once
    monkeypatch.setattr(src, "read_positions", real)
    result = await poller.run_round()
    assert sorted(result.polled) == [A, B, C]
    assert sorted(kinds(result.events)) == [(B, 10, "TRADE_OPENED", None), (C, 10, "TRADE_OPENED", None)]


async def test_restart_catches_up_and_stores_nothing_twice(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    first = make(store, src, clock, [A])
    src.set_positions(A, [position(A, 10, time=at(0), volume=0.2)])
    src.add_deals(A, deal(A, 100, 10, order=10, time=at(0), volume=0.2))
    await first.run_round()
    assert len(await all_events(store)) == 1

    # the agent is down for 5 minutes: sl moved, partly closed, and a trade opened and closed meanwhile
    clock.at(300)
    src.set_positions(A, [position(A, 10, time=at(0), time_update=at(120), volume=0.1, sl=1.0)])
    src.add_deals(
        A,
        deal(A, 101, 10, time=at(120), type=DealType.SELL, entry=DealEntry.OUT, volume=0.1),
        deal(A, 110, 11, order=11, time=at(150)),
        deal(A, 111, 11, time=at(200), type=DealType.SELL, entry=DealEntry.OUT, profit=7),
    )
    second = make(store, src, clock, [A])
    caught_up = (await second.run_round()).events
    assert sorted(kinds(caught_up)) == [
        (A, 10, "TRADE_UPDATED", "partial_close"),
        (A, 10, "TRADE_UPDATED", "sl_tp"),
        (A, 11, "TRADE_CLOSED", None),
        (A, 11, "TRADE_OPENED", None),
    ]
    # a third start over the same store, same facts: nothing at all
    third = make(store, src, clock, [A])
    assert (await third.run_round()).events == []
    assert (await second.run_round()).events == []
    events = await all_events(store)
    assert len(events) == 5 and len({e.dedup_key for e in events}) == 5


async def test_a_store_failure_is_retried_from_the_store(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A])
    src.set_positions(A, [position(A, 10, time=at(0))])
    real = store.positions.replace_positions

    async def refuse(*a: Any, **kw: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr(store.positions, "replace_positions", refuse)
    result = await poller.run_round()
    assert result.failed[A].startswith("store")
    monkeypatch.setattr(store.positions, "replace_positions", real)
    await poller.run_round()
    await poller.run_round()
    assert kinds(await all_events(store)) == [(A, 10, "TRADE_OPENED", None)]
    assert (await store.positions.get_positions(A)) is not None


async def test_an_unsupported_source_is_said_once_and_never_polled(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    src = MemorySource(clock=clock)
    src.health_status = SourceHealth(status="healthy", available=True, features=frozenset({"batch"}))
    src.set_positions(A, [position(A, 10, time=at(0))])
    metrics = AgentMetrics(runtime=False)
    poller = make(store, src, clock, [A], listener=metrics, recheck=0.0)
    with caplog.at_level(logging.INFO, logger="mt5_agent.events"):
        for _ in range(5):
            assert await poller.tick() is None
    assert sum(POSITIONS_UNAVAILABLE in r.getMessage() for r in caplog.records) == 1
    assert "positions" not in src.calls and "deals" not in src.calls
    assert metrics.registry.get_sample_value("mt5_trade_events_available", {"source": "bridge"}) == 0
    assert await all_events(store) == []

    src.health_status = SourceHealth(status="healthy", available=True, features=frozenset({"positions"}))
    assert await poller.tick() is not None  # upgraded: polled from then on
    assert metrics.registry.get_sample_value("mt5_trade_events_available", {"source": "bridge"}) == 1


async def test_metrics_move(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    metrics = AgentMetrics(runtime=False)
    poller = make(store, src, clock, [A], listener=metrics)
    value = metrics.registry.get_sample_value
    for t in EventType:
        assert value("mt5_trade_events_total", {"type": t.value}) == 0  # pre-initialised
    src.set_positions(A, [])
    await poller.tick()  # the catch-up round: no delay observed
    clock.at(10)
    src.set_positions(A, [position(A, 10, time=at(9)), position(A, 11, time=at(9))])
    await poller.tick()
    assert value("mt5_trade_events_total", {"type": "TRADE_OPENED"}) == 2
    assert value("mt5_account_open_positions", {"account": str(A)}) == 2
    assert (
        value("mt5_account_positions_last_poll_timestamp_seconds", {"account": str(A)}) == at(10).timestamp()
    )
    assert value("mt5_trade_event_detection_delay_seconds_count") == 2
    assert value("mt5_trade_event_detection_delay_seconds_bucket", {"le": "1.0"}) == 2
    assert value("mt5_positions_poll_duration_seconds_count") == 2
    metrics.on_accounts([])  # A left the fleet: its series go
    assert value("mt5_account_open_positions", {"account": str(A)}) is None


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def test_rounds_never_overlap_and_stop_is_clean(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    for acc in (A, B):
        src.set(acc, latency=0.03)  # each read takes longer than the period
        src.set_positions(acc, [])
    poller = make(store, src, clock, [A, B], interval=0.01)
    real = poller.run_round
    active, most = 0, 0

    async def counted() -> Any:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            return await real()
        finally:
            active -= 1

    poller.run_round = counted  # type: ignore[method-assign]
    poller.start()
    await wait_for(lambda: poller.rounds >= 4)
    await poller.stop()
    assert most == 1
    assert poller._task is None and not poller.running
    done = poller.rounds
    await asyncio.sleep(0.05)  # (not a wait for a condition: checks that nothing runs any more)
    assert poller.rounds == done


async def test_stop_cancels_a_round_that_overruns_the_grace(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    src.set(A, latency=30.0)
    src.set_positions(A, [])
    poller = make(store, src, clock, [A], interval=1.0, deadline=60.0)
    poller.start()
    await wait_for(lambda: poller.running)
    async with asyncio.timeout(2):
        await poller.stop(grace=0.05)
    assert not poller.running


async def test_retention_prunes_old_events_and_nothing_comes_back(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A], retention=timedelta(days=1))
    src.set_positions(A, [position(A, 10, time=at(0))])
    src.add_deals(A, deal(A, 100, 10, order=10, time=at(0)))
    await poller.run_round()
    clock.at(60)
    src.add_deals(A, deal(A, 101, 10, time=at(59), type=DealType.SELL, entry=DealEntry.OUT))
    src.set_positions(A, [])
    await poller.run_round()
    assert len(await all_events(store)) == 2
    assert await poller.prune() == 0  # younger than a day

    clock.at(2 * 86_400)
    assert await poller.prune() == 2
    assert await all_events(store) == [] and poller.detector is not None
    assert poller.detector.state.accounts[A].closed == {}  # the closed identifier is forgotten too
    assert (await poller.run_round()).events == []  # its deals swept again are not stored twice
    restarted = make(store, src, clock, [A], retention=timedelta(days=1))
    assert (await restarted.run_round()).events == []


async def test_status_per_account(store: Store, clock: Clock) -> None:
    src = MemorySource(clock=clock)
    accounts = [A, B]
    poller = make(store, src, clock, accounts)
    src.set_positions(A, [])
    src.set_positions(B, [])
    src.fail_positions(B, Reason.INVALID_PAYLOAD, "bad positions")
    await poller.run_round()
    assert poller.last_polled == {A: clock.now}
    assert poller.last_failure[B][1].startswith("invalid_payload: bad positions")
    accounts.remove(B)
    await poller.run_round()
    assert B not in poller.last_failure


async def test_a_failing_account_is_said_once_until_it_recovers(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A])
    src.set_positions(A, [])
    src.fail_deals(A, Reason.HTTP_STATUS)
    with caplog.at_level(logging.DEBUG, logger="mt5_agent.events"):
        for _ in range(3):
            await poller.run_round()
        src.fail_deals(A, None)
        await poller.run_round()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert sum("poll failed" in m for m in said) == 1
    assert sum("polled again" in m for m in said) == 1


async def test_a_restart_days_later_closes_a_long_trade_with_its_whole_pnl(
    store: Store, clock: Clock
) -> None:
    src = MemorySource(clock=clock)
    first = make(store, src, clock, [A])
    src.set_positions(A, [position(A, 10, time=at(0), volume=0.2)])
    src.add_deals(A, deal(A, 100, 10, order=10, time=at(0), volume=0.2, commission=-1))
    await first.run_round()
    clock.at(2 * 86_400)  # two days on, a short trade: the newest stored deal is far from the opening one
    src.add_deals(
        A,
        deal(A, 200, 20, order=20, time=at(2 * 86_400 - 2)),
        deal(A, 201, 20, time=at(2 * 86_400 - 1), type=DealType.SELL, entry=DealEntry.OUT),
    )
    await first.run_round()
    clock.at(3 * 86_400)  # then down for a day; the long trade is partly closed, then closed
    src.add_deals(
        A,
        deal(
            A,
            101,
            10,
            time=at(2 * 86_400 + 10),
            type=DealType.SELL,
            entry=DealEntry.OUT,
            volume=0.1,
            profit=4,
        ),
        deal(
            A,
            102,
            10,
            time=at(2 * 86_400 + 20),
            type=DealType.SELL,
            entry=DealEntry.OUT,
            volume=0.1,
            swap=-0.5,
        ),
    )
    src.set_positions(A, [])
    second = make(store, src, clock, [A])
    events = (await second.run_round()).events
    assert kinds(events) == [(A, 10, "TRADE_UPDATED", "partial_close"), (A, 10, "TRADE_CLOSED", None)]
    assert events[-1].data["pnl_exact"] == "2.5" and events[-1].data["pnl_complete"]


async def test_reads_are_concurrent_within_the_bound(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deals reads within the poller's bound; positions reads (all accounts' at once, from the source's
    `read_positions_many`) within the source's."""
    src = MemorySource(clock=clock)
    src.concurrency = 2
    accounts = list(range(2001, 2009))
    for acc in accounts:  # a position: its times tell the terminal's clock (the second round sweeps first)
        src.set_positions(acc, [position(acc, 10, time=at(0))])
    poller = make(store, src, clock, accounts, concurrency=3)
    active = {"positions": 0, "deals": 0}
    most = dict(active)

    def slowed(what: str, real: Any) -> Any:
        async def slow(account: int, *args: Any) -> Any:
            active[what] += 1
            most[what] = max(most[what], active[what])
            try:
                await asyncio.sleep(0.02)
                return await real(account, *args)
            finally:
                active[what] -= 1

        return slow

    monkeypatch.setattr(src, "read_positions", slowed("positions", src.read_positions))
    monkeypatch.setattr(src, "read_deals", slowed("deals", src.read_deals))
    for _ in range(2):  # the first round reads positions first, the second deals first
        result = await poller.run_round()
        assert sorted(result.polled) == accounts
    assert most == {"positions": 2, "deals": 3}


async def test_a_read_that_ignores_the_deadline_times_out_alone(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = MemorySource(clock=clock)
    for acc in (A, B):
        src.set_positions(acc, [])
    poller = make(store, src, clock, [A, B], deadline=0.1)
    real = src.read_positions

    async def hangs(account: int, deadline: float | None = None) -> Any:
        if account == B:
            await asyncio.sleep(60)
        return await real(account, deadline)

    monkeypatch.setattr(src, "read_positions", hangs)
    async with asyncio.timeout(5):
        result = await poller.run_round()
    assert result.polled == [A] and result.failed[B].startswith("timeout")


class _Polls:
    """Counts each account's successful polls (a PollListener)."""

    def __init__(self) -> None:
        self.polled: Counter[int] = Counter()

    def on_available(self, available: bool) -> None: ...

    def on_round(self, seconds: float) -> None: ...

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
        self.polled[account] += 1

    def on_account_failed(self, account: int, reason: str) -> None: ...

    def on_events_stored(self, events: Any, stored_at: datetime, catch_up: bool) -> None: ...

    def on_accounts(self, accounts: Any) -> None: ...


async def test_a_slow_account_does_not_hold_the_others_period(store: Store, clock: Clock) -> None:
    """B's reads take 0.4 s each; A is still polled every period (a round waits `hold`, one interval by
    default, then B finishes in the background and is skipped until it has), and B is never polled
    twice at once."""
    src = MemorySource(clock=clock)
    src.set(B, latency=0.4)
    for acc in (A, B):
        src.set_positions(acc, [position(acc, 10, time=at(0))])
    polls = _Polls()
    poller = make(store, src, clock, [A, B], interval=0.05, deadline=2.0, listener=polls)
    real = src.read_deals
    active, most = Counter[int](), Counter[int]()

    async def counted(account: int, *args: Any) -> Any:
        active[account] += 1
        most[account] = max(most[account], active[account])
        try:
            return await real(account, *args)
        finally:
            active[account] -= 1

    src.read_deals = counted  # type: ignore[method-assign]
    poller.start()
    try:
        await wait_for(lambda: polls.polled[B] >= 2, timeout=10.0)
        # two polls of B take 1.6 s or more (positions then deals, 0.4 s each, twice): at a 0.05 s
        # period A is polled some 30 times in that time; a round waiting for B would give 2 or 3
        assert polls.polled[A] >= 10, polls.polled
        assert most[B] == 1
    finally:
        await poller.stop()
    assert not poller._inflight


async def test_a_deal_swept_again_is_stored_once(
    store: Store, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Successive windows overlap (a late deal is still found): a deal they all hold is put once."""
    src = MemorySource(clock=clock)
    poller = make(store, src, clock, [A])
    src.set_positions(A, [position(A, 10, time=at(0))])
    src.add_deals(A, deal(A, 100, 10, order=10, time=at(0)))
    put: list[int] = []
    real = store.deals.put_deals

    async def counted(deals: Any) -> Any:
        put.extend(d.ticket for d in deals)
        return await real(deals)

    monkeypatch.setattr(store.deals, "put_deals", counted)
    for second in (1, 2, 3, 4):
        clock.at(second)
        assert not (await poller.run_round()).failed
    assert put == [100]
    clock.at(5)
    src.add_deals(A, deal(A, 101, 10, time=at(4.5), type=DealType.BUY, entry=DealEntry.IN))
    await poller.run_round()
    clock.at(6)
    await poller.run_round()
    assert put == [100, 101]
    assert [d.ticket for d in await store.deals.get_deals(A, since=at(-60))] == [100, 101]
