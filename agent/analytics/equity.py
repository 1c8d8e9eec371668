"""Recorded equity (DESIGN.md section 12): which of the synced equities to keep, and writing them.

After each sync cycle the recorder looks at every account's last values and keeps a point
(account, time, equity, balance) when the source said they were live and they are newer than the last
seen (`live_data_at` moved: a fallback (`VPS_STORED`) value or an account that failed is never stamped
as a new point), and:
- no point of the account is kept yet (since this process started), or
- at least `sample_seconds` passed since the last kept point (at most one point per period), or
- equity moved by more than `move_fraction` of the last kept point's: a fall or a rise between two
  periodic points is kept, so a peak or a trough the syncs saw is not lost to the sampling. A drawdown
  read from the points can still miss a trough that lasted less than one sync (the syncs never saw it)
  and understates one by at most about `move_fraction` (a move smaller than that is not kept).

The points of one cycle are written in one store write, off the cycle (a task: the cycle does not wait
for it); while one write runs, the next cycles' points queue and go in the next write. A failed write
keeps its points (up to MAX_PENDING, the oldest dropped first) for the next attempt. Old points are
pruned (older than `retention`) at most once per `prune_every` seconds, after a write.

Pure analytics plus a writer given by the caller (the store's `equity` concern): this module imports
the domain only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from agent.domain.accounts import AccountValues, DataSource
from agent.domain.equity import EquityPoint

log = logging.getLogger("mt5_agent.equity")

SAMPLE_SECONDS = 60.0
MOVE_FRACTION = 0.0025  # 0.25 % of equity since the last kept point: kept whatever the period
RETENTION = timedelta(days=90)
PRUNE_EVERY = 3600.0  # seconds between two prunes
MAX_PENDING = 200_000  # points kept in memory while the store is down (20 cycles of 10,000 accounts)
_LIVE = DataSource.LIVE.value


class SyncedAccount(Protocol):
    """What the recorder reads of an account after a sync (the fleet's `AccountState` has it)."""

    @property
    def account(self) -> int: ...
    @property
    def values(self) -> AccountValues | None: ...
    @property
    def data_source(self) -> str | None: ...
    @property
    def live_data_at(self) -> datetime | None: ...


class EquityWriter(Protocol):
    """The store's equity concern (`agent.store.base.EquityStore`), as far as the recorder uses it."""

    async def put_equity(self, points: Sequence[EquityPoint]) -> None: ...
    async def prune_equity(self, before: datetime) -> int: ...


class EquitySampler:
    """Decides which synced values become points (the rules in the module docstring). Not thread-safe:
    called from the event loop only."""

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS, move_fraction: float = MOVE_FRACTION) -> None:
        if sample_seconds <= 0 or move_fraction < 0:
            raise ValueError("sample_seconds must be > 0 and move_fraction >= 0")
        self.period = timedelta(seconds=sample_seconds)
        self.move_fraction = move_fraction
        self._seen: dict[int, datetime] = {}  # account -> live_data_at last looked at
        self._kept: dict[int, tuple[datetime, float]] = {}  # account -> (time, equity) last kept

    def sample(self, accounts: Iterable[SyncedAccount]) -> list[EquityPoint]:
        """The points to keep from the accounts' current values (each account's state moves on)."""
        seen, kept, period, fraction = self._seen, self._kept, self.period, self.move_fraction
        out: list[EquityPoint] = []
        for a in accounts:  # 10,000 accounts a cycle: most are skipped on the first two tests
            at = a.live_data_at
            if at is None or a.data_source != _LIVE:
                continue
            account = a.account
            last_seen = seen.get(account)
            if last_seen is not None and at <= last_seen:
                continue  # nothing new since the last look (failed, stored fallback, or not read yet)
            seen[account] = at
            values = a.values
            if values is None or values.equity is None:
                continue
            equity = values.equity
            previous = kept.get(account)
            if previous is not None:
                then, before = previous
                if at - then < period and abs(equity - before) <= fraction * abs(before):
                    continue
            kept[account] = (at, equity)
            out.append(EquityPoint(account, at, equity, values.balance))
        return out

    def forget(self, keep: Iterable[int]) -> None:
        """Drop the state of accounts not in `keep` (accounts that left the fleet)."""
        keep = set(keep)
        for state in (self._seen, self._kept):
            for account in [a for a in state if a not in keep]:
                del state[account]


class EquityRecorder:
    """Samples after each cycle (`observe`, synchronous: a sync run listener) and writes in the
    background; `stop` waits for the write in flight (call it before the store closes)."""

    def __init__(
        self,
        writer: EquityWriter,
        *,
        sample_seconds: float = SAMPLE_SECONDS,
        move_fraction: float = MOVE_FRACTION,
        retention: timedelta | None = RETENTION,
        prune_every: float = PRUNE_EVERY,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.writer = writer
        self.sampler = EquitySampler(sample_seconds, move_fraction)
        self.retention = retention
        self.prune_every = prune_every
        self.max_pending = max_pending
        self.clock = clock
        self._pending: list[EquityPoint] = []
        self._task: asyncio.Task[None] | None = None
        self._pruned_at: float | None = None  # monotonic
        self.written = 0  # points written since start
        self.dropped = 0  # points dropped (the store was down for too long)
        self.failures = 0  # writes that failed
        self.pruned = 0  # points pruned since start

    def observe(self, accounts: Iterable[SyncedAccount]) -> None:
        """Sample the accounts' current values and start a write of what is pending, unless one runs."""
        points = self.sampler.sample(accounts)
        if points:
            self._pending.extend(points)
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                del self._pending[:excess]
                self.dropped += excess
                log.warning("equity points dropped: %d waited for the store too long", excess)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._write(), name="equity-write")

    async def _write(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.writer.put_equity(batch)
            except Exception as exc:  # the store's error, or a bug: never escapes to the loop
                self.failures += 1
                self._pending[:0] = batch  # older first; bounded by the next observe
                log.error("could not record %d equity point(s) (kept to retry): %s", len(batch), exc)
                return
            self.written += len(batch)
        await self._prune()

    async def _prune(self) -> None:
        if self.retention is None:
            return
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < self.prune_every:
            return
        self._pruned_at = now
        try:
            self.pruned += await self.writer.prune_equity(self.clock() - self.retention)
        except Exception as exc:
            log.error("could not prune equity points: %s", exc)

    async def flush(self) -> None:
        """Wait for the write in flight, if any (tests; `stop`)."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def stop(self) -> None:
        """Wait for the write in flight; what is still pending then is written once more, at most."""
        await self.flush()
        if self._pending:
            self._task = asyncio.get_running_loop().create_task(self._write(), name="equity-write")
            await self.flush()
