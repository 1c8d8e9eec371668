"""The positions poller: per source, on its own fast period, every account's new deals then its open
positions go through the detector; new events are stored before the positions they are reflected in.

One round, for every account of the fleet (concurrently, at most `concurrency` at once, all reads within
the round's `deadline`):
1. sweep the deals since the last deal time seen minus `overlap` (a deal seen twice adds nothing; a late
   closing deal inside the overlap is still found); an account never swept before also gets the deals
   since the oldest open time of its positions, so a close later has its whole P&L;
2. read the positions; 3. `Detector.observe`; 4. `store.events.append_events` (the store keeps each
dedup_key once), then `put_deals`, then `replace_positions` (so a snapshot's `as_of_event_id` covers its
events). One account's failure (a `ReadFailure`, or any exception) is that account's, with a reason.

Rounds never overlap (one loop: the next round starts after the previous one ends). At start the
detector is rebuilt from the store (`DetectorState.from_facts`), so changes made while the agent was down
yield their events at the first round and nothing stored is emitted again; after a store write fails the
state is rebuilt the same way before the next round (what was not stored is detected again).

A source that serves no positions (the seed's bridge) is said once (a log line with
POSITIONS_UNAVAILABLE, `listener.on_available(False)`) and nothing is polled; its health is checked again
every `recheck` seconds in case it is upgraded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from agent.domain.accounts import ReadFailure, Reason
from agent.domain.trades import Deal, PositionsSnapshot, TradeEvent
from agent.events.detector import Detector
from agent.events.state import DetectorState
from agent.sources.base import POSITIONS_UNAVAILABLE, Source, SourceError
from agent.store.base import Store

log = logging.getLogger("mt5_agent.events")
T = TypeVar("T")

DEAL_OVERLAP = timedelta(seconds=60)
RECHECK_SECONDS = 30.0
UNKNOWN_RECHECK_SECONDS = 2.0
REBUILD_DEALS_WINDOW = timedelta(days=1)
PRUNE_EVERY_SECONDS = 3600.0
STORE_FAILED = "store"  # the failure reason when the store refused the round's writes
INTERNAL = "internal"  # an unexpected exception while polling one account


class PollListener(Protocol):
    """What the poller reports (the telemetry implements it; every method is cheap and never raises)."""

    def on_available(self, available: bool) -> None: ...

    def on_round(self, seconds: float) -> None: ...

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None: ...

    def on_account_failed(self, account: int, reason: str) -> None: ...

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None: ...

    def on_accounts(self, accounts: Iterable[int]) -> None:
        """The accounts polled now (series of accounts no longer polled may be dropped)."""
        ...


@dataclass
class RoundResult:
    accounts: int = 0
    polled: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # account -> reason
    events: list[TradeEvent] = field(default_factory=list)  # stored this round, in id order per account
    seconds: float = 0.0


class PositionsPoller:
    def __init__(
        self,
        store: Store,
        source: Source,
        accounts: Callable[[], Iterable[int]],
        *,
        interval: float,
        concurrency: int = 16,
        deadline: float | None = None,
        retention: timedelta | None = timedelta(days=30),
        overlap: timedelta = DEAL_OVERLAP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        listener: PollListener | None = None,
        recheck: float = RECHECK_SECONDS,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive (0 disables the poller: do not build one)")
        self.store = store
        self.source = source
        self.accounts = accounts
        self.interval = interval
        self.deadline = deadline if deadline is not None else max(2.0 * interval, 2.0)
        self.retention = retention
        self.overlap = overlap
        self.clock = clock
        self.listener = listener
        self.recheck = recheck
        self.ready = ready  # False while the store is not open yet (the sync's first cycle opens it)
        self._failing = False  # the last tick raised: said once, not every round
        self.detector: Detector | None = None  # None: (re)build from the store before the next round
        self.cursors: dict[int, datetime] = {}  # account -> newest deal time stored
        self.available: bool | None = None  # None: not known yet (no usable health yet)
        self.rounds = 0
        # per account, for a status page or API: the last successful poll, and the last failure
        self.last_polled: dict[int, datetime] = {}
        self.last_failure: dict[int, tuple[datetime, str]] = {}  # account -> (when, "<reason>: <message>")
        self._failing_accounts: set[int] = set()  # failed at their last poll
        self._rejections_said: dict[int, list[str]] = {}  # the detector's last rejections, said once
        self.running = False  # a round is in progress (rounds never overlap)
        self._sem = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._last_check = -float("inf")
        self._last_prune = -float("inf")
        self._catch_up = True  # the first round after a rebuild reports its events as catch-up

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="positions-poller")

    async def stop(self, grace: float = 5.0) -> None:
        """Let a running round finish (up to `grace` seconds), then cancel it."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.warning("cancelled a positions round still running at shutdown")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                await self.tick()
                self._failing = False
            except Exception:  # never let the loop die: the next round tries again (said once)
                if not self._failing:
                    log.exception("positions round failed (retried every round)")
                self._failing = True
            delay = max(0.0, self.interval - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    # --- one tick ------------------------------------------------------------------------------------

    async def tick(self) -> RoundResult | None:
        """Check support when due, prune when due, then one round; None when nothing was polled."""
        if not self.ready() or not await self._supported():
            return None
        if self.detector is None:
            await self.rebuild()
        await self._prune_when_due()
        return await self.run_round()

    async def _supported(self) -> bool:
        """Asked of the source's health: every `recheck` seconds once it said no, every few seconds
        while it has not answered yet (a bridge still starting), never again once it said yes."""
        now = time.monotonic()
        every = self.recheck if self.available is False else min(self.recheck, UNKNOWN_RECHECK_SECONDS)
        if self.available is True or now - self._last_check < every:
            return bool(self.available)
        self._last_check = now
        try:
            health = await self.source.health()
        except SourceError as exc:
            log.debug("positions: source health unknown (%s)", exc.message)
            return False
        if not health.usable:
            return False
        available = self.source.positions_supported(health)
        if available != self.available:
            if available:
                log.info(
                    "positions: source %s serves positions; polling every %gs",
                    self.source.name,
                    self.interval,
                )
            else:
                log.warning("%s (source %s)", POSITIONS_UNAVAILABLE, self.source.name)
            self.available = available
            if self.listener is not None:
                self.listener.on_available(available)
        return available

    async def rebuild(self) -> None:
        """The detector's state and the deal cursors from the store (see the module docstring)."""
        snapshots = await self.store.positions.get_all_positions()
        accounts = set(snapshots) | set(self.accounts())
        keys = await self.store.events.dedup_keys(accounts=accounts)
        deals: list[Deal] = []
        cursors: dict[int, datetime] = {}
        for acc in sorted(accounts):
            latest = await self.store.deals.latest_deal_time(acc)
            if latest is None:
                continue
            cursors[acc] = latest
            # not the whole history: the deals of the positions still open (since the oldest one opened)
            # and of the last day (a position gone whose closing deal is still to come)
            since = latest - REBUILD_DEALS_WINDOW
            snap = snapshots.get(acc)
            if snap is not None and snap.positions:
                since = min(since, min(p.time for p in snap.positions))
            deals += await self.store.deals.get_deals(acc, since=since - self.overlap)
        state = DetectorState.from_facts(
            [p for s in snapshots.values() for p in s.positions],
            deals,
            keys,
            as_of={acc: s.as_of for acc, s in snapshots.items()},
        )
        self.detector = Detector(state)
        self.cursors = cursors
        self._catch_up = True

    async def _prune_when_due(self) -> None:
        if self.retention is None or time.monotonic() - self._last_prune < PRUNE_EVERY_SECONDS:
            return
        self._last_prune = time.monotonic()
        await self.prune()

    async def prune(self) -> int:
        """Drop events (and closed identifiers) older than the retention; returns the events dropped."""
        if self.retention is None:
            return 0
        before = self.clock() - self.retention
        try:
            dropped = await self.store.events.prune_events(keep_after=before)
        except Exception:
            log.exception("pruning trade events failed")
            return 0
        if self.detector is not None:
            self.detector.state.prune_closed(before)
        if dropped:
            log.info("pruned %d trade events detected before %s", dropped, before.isoformat())
        return dropped

    async def run_round(self) -> RoundResult:
        """One round over every account (the caller guarantees one at a time: `tick` and the loop)."""
        if self.running:
            raise RuntimeError("a positions round is already running")
        self.running = True
        started = time.perf_counter()
        try:
            if self.detector is None:
                await self.rebuild()
            accounts = sorted(set(self.accounts()))
            for gone in (self.last_polled.keys() | self.last_failure.keys()) - set(accounts):
                self.last_polled.pop(gone, None)
                self.last_failure.pop(gone, None)
                self._failing_accounts.discard(gone)
                self._rejections_said.pop(gone, None)
            if self.listener is not None:
                self.listener.on_accounts(accounts)
            result = RoundResult(accounts=len(accounts))
            end = time.monotonic() + self.deadline
            await asyncio.gather(*(self._account(a, end, result) for a in accounts))
            self.rounds += 1
            if self.detector is not None:
                self._catch_up = False
            return result
        finally:
            self.running = False
            result_seconds = time.perf_counter() - started
            if self.listener is not None:
                self.listener.on_round(result_seconds)

    # --- one account ---------------------------------------------------------------------------------

    async def _account(self, account: int, end: float, result: RoundResult) -> None:
        async with self._sem:
            try:
                failure = await self._poll(account, end, result)
            except Exception as exc:  # one account's bug or bad data never stops the others
                if account not in self._failing_accounts:  # the traceback once, not every round
                    log.exception("positions: account %d failed", account)
                failure = f"{INTERNAL}: {type(exc).__name__}"
        if failure is None:
            result.polled.append(account)
            if account in self._failing_accounts:
                self._failing_accounts.discard(account)
                log.info("positions: account %d polled again", account)
            return
        reason = failure.split(":", 1)[0]
        result.failed[account] = failure
        previous = self.last_failure.get(account)
        if (
            account in self._failing_accounts
            and previous is not None
            and previous[1].split(":", 1)[0] == reason
        ):
            log.debug("positions: account %d still failing: %s", account, failure)
        else:  # said when an account starts failing or its reason changes, not every round
            log.warning("positions: account %d poll failed: %s", account, failure)
        self._failing_accounts.add(account)
        self.last_failure[account] = (self.clock(), failure)
        if self.listener is not None:
            self.listener.on_account_failed(account, reason)

    async def _poll(self, account: int, end: float, result: RoundResult) -> str | None:
        """Returns None on success, else "<reason>: <message>"."""
        now = self.clock()
        cursor = self.cursors.get(account)
        since = (cursor if cursor is not None else now) - self.overlap
        until = now + self.overlap  # a terminal clock slightly ahead still has its deals swept
        deals = await _within(self.source.read_deals(account, since, until, _left(end)), end)
        if isinstance(deals, ReadFailure):
            return _failure(deals)
        snap = await _within(self.source.read_positions(account, _left(end)), end)
        if isinstance(snap, ReadFailure):
            return _failure(snap)
        if cursor is None and snap.positions:
            oldest = min(p.time for p in snap.positions)
            if oldest < since:  # first sweep of this account: the history of its open positions
                older = await _within(
                    self.source.read_deals(account, oldest - self.overlap, since, _left(end)), end
                )
                if isinstance(older, ReadFailure):
                    return _failure(older)
                deals = [*older, *deals]
        detector = self.detector
        if detector is None:  # another account's store write failed this round: rebuilt next round
            return f"{STORE_FAILED}: state being rebuilt"
        detected_at = self.clock()
        events = detector.observe(account, snapshot=snap, deals=deals, detected_at=detected_at)
        if detector.rejected and detector.rejected != self._rejections_said.get(account):
            log.warning("positions: account %d: set aside: %s", account, "; ".join(detector.rejected[:5]))
        self._rejections_said[account] = detector.rejected
        try:
            stored = await self.store.events.append_events(events) if events else []
            mine = [d for d in deals if d.account == account]
            if mine:
                await self.store.deals.put_deals(mine)
            await self.store.positions.replace_positions(account, _without_id(snap))
        except Exception as exc:
            # the detector now believes events stored that may not be: rebuild it from the store
            self.detector = None
            log.warning("positions: account %d: store write failed (%s); state rebuilt", account, exc)
            return f"{STORE_FAILED}: {type(exc).__name__}"
        stored_at = self.clock()
        # the next sweep starts `overlap` before this one did (at the earliest): the window stays short
        # on a quiet account, and a deal the terminal shows up to 2 x overlap late is still swept
        self.cursors[account] = max(now - self.overlap, cursor or now - self.overlap)
        result.events += stored
        self.last_polled[account] = stored_at
        if self.listener is not None:
            if stored:
                self.listener.on_events_stored(stored, stored_at, self._catch_up)
            self.listener.on_account_polled(account, len(snap.positions), stored_at)
        return None


def _left(end: float) -> float:
    return max(0.001, end - time.monotonic())


async def _within(read: Awaitable[T], end: float) -> T | ReadFailure:
    """The read, or a timeout failure when it overruns the round's deadline (a source that ignores the
    deadline it is given still cannot hold the round)."""
    try:
        return await asyncio.wait_for(read, timeout=_left(end) + 0.5)
    except TimeoutError:
        return ReadFailure(Reason.TIMEOUT, "no answer within the positions round deadline")


def _failure(f: ReadFailure) -> str:
    reason = f.reason.value if isinstance(f.reason, Reason) else str(f.reason)
    return f"{reason}: {f.message}"


def _without_id(snap: PositionsSnapshot) -> PositionsSnapshot:
    """The store sets `as_of_event_id` (its latest id at the write) when the snapshot carries none."""
    if snap.as_of_event_id is None:
        return snap
    return replace(snap, as_of_event_id=None)
