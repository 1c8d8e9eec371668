"""Recorded equity (agent.analytics.equity): which synced values become points (live only, newer only, at
most one per period unless equity moved by more than the fraction), one store write per cycle off the
cycle, points kept while the store is down, pruning by age. Against a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.analytics.equity import EquityRecorder, EquitySampler
from agent.domain.accounts import AccountValues, DataSource
from agent.domain.equity import EquityPoint
from agent.store.sqlite import SQLiteStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)
LIVE, STORED = DataSource.LIVE.value, DataSource.STORED.value


@dataclass(frozen=True)
class Synced:
    account: int
    values: AccountValues | None
    data_source: str | None
    live_data_at: datetime | None


def acct(account: int, at: datetime | None, equity: float | None, source: str = LIVE) -> Synced:
    return Synced(account, AccountValues(balance=1000.0, equity=equity), source, at)


def test_sampling_rules() -> None:
    s = EquitySampler(sample_seconds=60, move_fraction=0.01)
    assert s.sample([acct(1, T0, 1000.0), acct(2, None, 5.0), acct(3, T0, 5.0, STORED)]) == [
        EquityPoint(1, T0, 1000.0, 1000.0)
    ]
    assert s.sample([acct(1, T0, 1000.0)]) == []  # the same live read again: nothing new
    assert s.sample([acct(1, T0 + 10 * S, 1009.0)]) == []  # within the period, moved 0.9 %
    assert s.sample([acct(1, T0 + 20 * S, 989.0)]) == [EquityPoint(1, T0 + 20 * S, 989.0, 1000.0)]  # -1.1 %
    assert s.sample([acct(1, T0 + 30 * S, 999.0)]) == [EquityPoint(1, T0 + 30 * S, 999.0, 1000.0)]  # +1.01 %
    assert s.sample([acct(1, T0 + 89 * S, 999.5)]) == []
    assert s.sample([acct(1, T0 + 90 * S, 999.5)]) == [EquityPoint(1, T0 + 90 * S, 999.5, 1000.0)]  # period
    # A stored fallback carrying other values, an older read, no equity: never a point.
    assert (
        s.sample([acct(1, T0 + 200 * S, 1.0, STORED), acct(1, T0 + 50 * S, 1.0), acct(1, T0 + 300 * S, None)])
        == []
    )
    assert s.sample([Synced(4, None, LIVE, T0)]) == []  # a document without values yet
    s.forget([4])
    assert s.sample([acct(1, T0 + 300 * S, 999.5)]) == [EquityPoint(1, T0 + 300 * S, 999.5, 1000.0)]  # anew


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "equity.db"))
    await s.open()
    yield s
    await s.close()


class CountingWriter:
    """The store's equity concern, counting writes; a write can be held to see what queues meanwhile."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.writes: list[int] = []
        self.prunes: list[datetime] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.entered = asyncio.Event()

    async def put_equity(self, points: list[EquityPoint]) -> None:
        self.entered.set()
        await asyncio.wait_for(self.hold.wait(), 10)
        await self.store.equity.put_equity(points)
        self.writes.append(len(points))

    async def prune_equity(self, before: datetime) -> int:
        self.prunes.append(before)
        return await self.store.equity.prune_equity(before)


async def test_one_write_per_cycle_and_the_next_cycles_queue_behind_a_slow_one(store: SQLiteStore) -> None:
    writer = CountingWriter(store)
    rec = EquityRecorder(writer, sample_seconds=60, retention=None)
    rec.observe([acct(a, T0, 100.0 + a) for a in range(1, 501)])
    await rec.flush()
    assert writer.writes == [500]
    writer.hold.clear()
    writer.entered.clear()
    rec.observe([acct(1, T0 + 61 * S, 1.0)])
    await asyncio.wait_for(writer.entered.wait(), 10)  # the write of cycle 2 is in flight
    rec.observe([acct(2, T0 + 61 * S, 1.0)])  # cycle 3 and 4 queue
    rec.observe([acct(3, T0 + 61 * S, 1.0)])
    writer.hold.set()
    await rec.flush()
    assert writer.writes == [500, 1, 2] and rec.written == 503
    assert [p.equity for p in await store.equity.get_equity(3)] == [103.0, 1.0]


async def test_points_wait_while_the_store_is_down_and_go_in_later(store: SQLiteStore) -> None:
    rec = EquityRecorder(store.equity, sample_seconds=60, retention=None, max_pending=3)
    await store.close()
    rec.observe([acct(1, T0, 10.0), acct(2, T0, 20.0)])
    await rec.flush()
    assert rec.failures == 1 and rec.written == 0
    rec.observe([acct(1, T0 + 61 * S, 11.0), acct(2, T0 + 61 * S, 21.0)])  # 4 pending: the oldest goes
    await rec.flush()
    assert rec.dropped == 1 and rec.failures == 2
    await store.open()
    rec.observe([])  # the next cycle, nothing new: what waits is written
    await rec.flush()
    assert rec.written == 3
    assert [p.equity for p in await store.equity.get_equity(1)] == [11.0]
    assert [p.equity for p in await store.equity.get_equity(2)] == [20.0, 21.0]


async def test_old_points_are_pruned_at_most_once_per_period(store: SQLiteStore) -> None:
    writer = CountingWriter(store)
    now = T0 + timedelta(days=91)
    rec = EquityRecorder(writer, retention=timedelta(days=90), prune_every=3600, clock=lambda: now)
    await store.equity.put_equity([EquityPoint(9, T0 + i * S, 1.0) for i in range(5)])
    rec.observe([acct(1, now, 5.0)])
    await rec.flush()
    assert writer.prunes == [now - timedelta(days=90)] and rec.pruned == 5
    assert await store.equity.get_equity(9) == []
    rec.observe([acct(1, now + 61 * S, 5.0)])
    await rec.flush()
    assert len(writer.prunes) == 1  # not again within the hour
    assert len(await store.equity.get_equity(1)) == 2


async def test_stop_writes_what_is_pending(store: SQLiteStore) -> None:
    rec = EquityRecorder(store.equity, retention=None)
    rec.observe([acct(1, T0, 10.0)])
    await rec.stop()
    assert [p.equity for p in await store.equity.get_equity(1)] == [10.0]
