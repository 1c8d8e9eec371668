"""The positions poller: per source, on its own fast period, every account's new deals then its open
positions go through the detector; new events are stored before the positions they are reflected in.

One round, for every account of the fleet (concurrently, at most `concurrency` deals reads at once, all
reads within the round's `deadline`):
0. every account's positions are asked at once (`Source.read_positions_many`: one batch request where the
   source advertises it), each account going on as soon as its own answer is in;
1. sweep the deals since the previous sweep's start, itself `overlap` before the terminal's now at the
   time, so a deal the terminal shows up to 2 x overlap late is still swept (a deal seen twice adds
   nothing). The window is in the terminal's clock, which may be hours off the agent's: its offset is
   learnt from the times the terminal reports (`_observe`). An account never swept before waits for its
   positions first and also gets the deals since the oldest open time of its positions, so a close later
   has its whole P&L; with nothing of its clock known yet, the sweep looks back `max_skew` (a day);
2. its positions; 3. `Detector.observe` (deals and snapshots in either order give the same events);
4. `store.events.append_events` (the store keeps each dedup_key once), then `put_deals`, then
`replace_positions` (so a snapshot's `as_of_event_id` covers its events). One account's failure (a
`ReadFailure`, or any exception) is that account's, with a reason.

Rounds never overlap (one loop: the next round starts after the previous one ends), but a round waits
for its accounts only `hold` seconds (one interval by default): an account still being polled then (a
slow terminal) finishes in the background within the deadline and is skipped by the rounds it overlaps,
so it never stretches the others' period, and no account is ever polled twice at once. At start the
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
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from agent.domain.accounts import AccountValues, ReadFailure, Reason
from agent.domain.tasks import cancel_all, cancel_and_wait
from agent.domain.trades import Deal, PositionsSnapshot, TradeEvent
from agent.events.detector import Detector
from agent.events.state import DetectorState
from agent.sources.base import POSITIONS_UNAVAILABLE, PositionsRead, Source, SourceError
from agent.store.base import Store

log = logging.getLogger("mt5_agent.events")
T = TypeVar("T")

DEAL_OVERLAP = timedelta(seconds=60)
# how far a terminal's clock may be from the agent's: the first sweep of a terminal never seen at work looks
# back this far, and every sweep reaches this far past the agent's now
MAX_CLOCK_SKEW = timedelta(days=1)
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
        max_skew: timedelta = MAX_CLOCK_SKEW,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        listener: PollListener | None = None,
        recheck: float = RECHECK_SECONDS,
        ready: Callable[[], bool] = lambda: True,
        hold: float | None = None,
        values: Callable[[int], AccountValues | None] | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive (0 disables the poller: do not build one)")
        self.store = store
        self.source = source
        self.accounts = accounts
        self.interval = interval
        self.deadline = deadline if deadline is not None else max(2.0 * interval, 2.0)
        # how long a round waits for its slowest accounts before it ends (they finish in the background,
        # within the deadline, and are skipped by the rounds they overlap): the period of the others
        self.hold = hold if hold is not None else interval
        self.retention = retention
        self.overlap = overlap
        self.max_skew = max_skew
        self.clock = clock
        self.listener = listener
        self.recheck = recheck
        self.ready = ready  # False while the store is not open yet (the sync's first cycle opens it)
        # an account's synced values now (balance, margin level: the events' scores), from memory: a
        # store read per event would slow detection
        self.values = values
        self._failing = False  # the last tick raised: said once, not every round
        self.detector: Detector | None = None  # None: (re)build from the store before the next round
        self.cursors: dict[int, datetime] = {}  # account -> where the next deal sweep starts (terminal time)
        # account -> the terminal's clock minus the agent's (a lower bound, see `_observe`)
        self._offsets: dict[int, timedelta] = {}
        # account -> ticket -> time of the deals this poller stored that later windows may sweep again
        # (a deal is put once, not at every sweep that holds it)
        self._stored_deals: dict[int, dict[int, datetime]] = {}
        self.available: bool | None = None  # None: not known yet (no usable health yet)
        self.rounds = 0
        # per account, for a status page or API: the last successful poll, and the last failure
        self.last_polled: dict[int, datetime] = {}
        self.last_failure: dict[int, tuple[datetime, str]] = {}  # account -> (when, "<reason>: <message>")
        self._failing_accounts: set[int] = set()  # failed at their last poll
        self._rejections_said: dict[int, list[str]] = {}  # the detector's last rejections, said once
        self.running = False  # a round is in progress (rounds never overlap)
        # account -> its poll still running after its round ended (an account is never polled twice at once)
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._feeds: set[asyncio.Task[None]] = set()  # positions reads still feeding accounts
        self._terminal_locks: dict[str, asyncio.Lock] = {}  # a shared terminal: one account at a time
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
        """Let a running round and the account polls it left running finish (up to `grace` seconds),
        then cancel them."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        end = time.monotonic() + grace
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace)
        except TimeoutError:
            await cancel_and_wait(task)
            log.warning("cancelled a positions round still running at shutdown")
        await self._settle(max(0.0, end - time.monotonic()))

    async def _settle(self, grace: float) -> None:
        """Wait up to `grace` seconds for the account polls and reads still running, then cancel them."""
        left = [t for t in (*self._inflight.values(), *self._feeds) if not t.done()]
        if left:
            _, pending = await asyncio.wait(left, timeout=grace)
            await cancel_all(list(pending))
            await asyncio.gather(*left, return_exceptions=True)
            if pending:
                log.warning("cancelled %d positions poll(s) still running at shutdown", len(pending))
        self._inflight.clear()
        self._feeds.clear()

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
        self._stored_deals.clear()  # what is stored is known again from the store: put what is swept
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
                self._offsets.pop(gone, None)
                self._stored_deals.pop(gone, None)
            if self.listener is not None:
                self.listener.on_accounts(accounts)
            result = RoundResult(accounts=len(accounts))
            end = time.monotonic() + self.deadline
            busy = {a for a, t in self._inflight.items() if not t.done()}
            self._inflight = {a: t for a, t in self._inflight.items() if a in busy}
            todo = [a for a in accounts if a not in busy]
            shared = {a: name for a in todo if (name := self.source.shared_terminal(a)) is not None}
            feed = self._feed([a for a in todo if a not in shared], end)
            tasks = {
                a: asyncio.ensure_future(self._account(a, end, result, feed.get(a), shared.get(a)))
                for a in todo
            }
            if tasks:
                _, pending = await asyncio.wait(tasks.values(), timeout=self.hold)
                for a, t in tasks.items():
                    if t in pending:  # finishes in the background (within the deadline)
                        self._inflight[a] = t
                        t.add_done_callback(functools.partial(self._done, a))
            self.rounds += 1
            if self.detector is not None:
                self._catch_up = False
            return result
        finally:
            self.running = False
            result_seconds = time.perf_counter() - started
            if self.listener is not None:
                self.listener.on_round(result_seconds)

    def _terminal_lock(self, terminal: str) -> asyncio.Lock:
        lock = self._terminal_locks.get(terminal)
        if lock is None:
            lock = self._terminal_locks[terminal] = asyncio.Lock()
        return lock

    def _done(self, account: int, task: asyncio.Task[None]) -> None:
        if self._inflight.get(account) is task:
            del self._inflight[account]

    def _feed(self, accounts: list[int], end: float) -> dict[int, asyncio.Future[PositionsRead]]:
        """The round's positions, read for all its accounts at once (`Source.read_positions_many`: one
        request where the source can), each account's answer in its own future as soon as it is known."""
        loop = asyncio.get_running_loop()
        futures: dict[int, asyncio.Future[PositionsRead]] = {a: loop.create_future() for a in accounts}
        if not accounts:
            return futures

        async def read() -> None:
            try:
                stream = self.source.read_positions_many(accounts, _left(end))
                async with contextlib.aclosing(stream):  # type: ignore[type-var]
                    async for account, answer in stream:
                        fut = futures.get(account)
                        if fut is not None and not fut.done():
                            fut.set_result(answer)
            except Exception as exc:  # the source's bug: every account still unanswered fails with it
                log.exception("positions: reading every account's positions failed")
                failure = ReadFailure(Reason.INVALID_PAYLOAD, f"positions: unexpected {type(exc).__name__}")
            else:
                failure = ReadFailure(Reason.TIMEOUT, "positions: no answer within the round deadline")
            finally:
                self._feeds.discard(task)
            for fut in futures.values():
                if not fut.done():
                    fut.set_result(failure)

        task = loop.create_task(read(), name="positions-feed")
        self._feeds.add(task)
        return futures

    # --- one account ---------------------------------------------------------------------------------

    async def _account(
        self,
        account: int,
        end: float,
        result: RoundResult,
        fed: asyncio.Future[PositionsRead] | None,
        terminal: str | None,
    ) -> None:
        """`fed`: the account's positions from the round's read of all; None: read them here. `terminal`:
        the one it shares with other accounts, whose polls then run one after another, each one's reads
        back to back (a terminal switching accounts pays a login per switch: one per account and round)."""
        if fed is not None:
            positions: Callable[[], Awaitable[PositionsRead]] = lambda: asyncio.shield(fed)  # noqa: E731
        else:
            positions = lambda: self.source.read_positions(account, _left(end))  # noqa: E731
        lock = contextlib.nullcontext() if terminal is None else self._terminal_lock(terminal)
        async with lock, self._sem:
            if terminal is not None:  # its turn on the terminal: its own deadline from now (the others'
                end = max(end, time.monotonic() + self.deadline)  # turns are not its reads' time)
            try:
                failure = await self._poll(account, end, result, positions)
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

    async def _poll(
        self,
        account: int,
        end: float,
        result: RoundResult,
        positions: Callable[[], Awaitable[PositionsRead]],
    ) -> str | None:
        """Returns None on success, else "<reason>: <message>".

        The deal window is in the terminal's time, never the agent's: the two clocks may differ by hours
        (a terminal or a simulated desk behind), and a window from the agent's clock would then never
        hold a deal. See `_observe` for how the terminal's time is known."""
        cursor = self.cursors.get(account)
        snap: PositionsSnapshot | None = None
        if cursor is None or account not in self._offsets:
            # nothing of this terminal's time known yet: its positions first (their times are in its
            # clock; the detector takes deals and snapshots in either order)
            first = await _within(positions(), end)
            if isinstance(first, ReadFailure):
                return _failure(first)
            snap = first
            self._observe(account, (t for p in snap.positions for t in (p.time, p.time_update)))
        now = self.clock()
        offset = self._offsets.get(account)
        terminal_now = None if offset is None else now + offset  # a lower bound of the terminal's now
        if cursor is not None:
            since = cursor - self.overlap
        elif terminal_now is not None:
            since = terminal_now - self.overlap
        else:  # a terminal never seen at work: look back far enough for any plausible clock difference
            assert snap is not None
            since = min(now, snap.as_of) - self.max_skew
        if cursor is None and snap is not None and snap.positions:
            # first sweep of this account: the history of its open positions (a close later has its P&L)
            since = min(since, min(p.time for p in snap.positions) - self.overlap)
        # a later `until` costs nothing (no deal is dated in the terminal's future), a short one loses deals
        until = max(now, terminal_now or now) + self.max_skew
        deals = await _within(self.source.read_deals(account, since, until, _left(end)), end)
        if isinstance(deals, ReadFailure):
            return _failure(deals)
        self._observe(account, (d.time for d in deals if d.account == account))
        if snap is None:
            second = await _within(positions(), end)
            if isinstance(second, ReadFailure):
                return _failure(second)
            snap = second
            self._observe(account, (t for p in snap.positions for t in (p.time, p.time_update)))
        detector = self.detector
        if detector is None:  # another account's store write failed this round: rebuilt next round
            return f"{STORE_FAILED}: state being rebuilt"
        detected_at = self.clock()
        values = self.values(account) if self.values is not None else None
        events = detector.observe(account, snapshot=snap, deals=deals, detected_at=detected_at, values=values)
        if detector.rejected and detector.rejected != self._rejections_said.get(account):
            log.warning("positions: account %d: set aside: %s", account, "; ".join(detector.rejected[:5]))
        self._rejections_said[account] = detector.rejected
        try:
            stored = await self.store.events.append_events(events) if events else []
            known = self._stored_deals.setdefault(account, {})
            new = [d for d in deals if d.account == account and d.ticket not in known]
            if new:
                await self.store.deals.put_deals(new)
            await self.store.positions.replace_positions(account, _without_id(snap))
        except Exception as exc:
            # the detector now believes events stored that may not be: rebuild it from the store
            self.detector = None
            log.warning("positions: account %d: store write failed (%s); state rebuilt", account, exc)
            return f"{STORE_FAILED}: {type(exc).__name__}"
        stored_at = self.clock()
        # the next sweep starts `overlap` before this one did (at the earliest): the window stays short
        # on a quiet account, and a deal the terminal shows up to 2 x overlap late is still swept
        offset = self._offsets.get(account)
        if offset is not None:  # else the next sweep starts where this one did (or looks back again)
            floor = now + offset - self.overlap
            self.cursors[account] = floor if cursor is None else max(floor, cursor)
        for d in new:
            known[d.ticket] = d.time
        for ticket in [t for t, at in known.items() if at < since]:  # out of the next windows for good
            del known[ticket]
        result.events += stored
        self.last_polled[account] = stored_at
        if self.listener is not None:
            if stored:
                self.listener.on_events_stored(stored, stored_at, self._catch_up)
            self.listener.on_account_polled(account, len(snap.positions), stored_at)
        return None

    def _observe(self, account: int, times: Iterable[datetime]) -> None:
        """The terminal's clock minus the agent's, as a lower bound: every time a terminal reports (a deal's,
        a position's open or update time) is at or before its own present when the agent receives it, so
        `time - agent clock at receipt` never overestimates the offset, and the largest such value seen is
        the best estimate (exact to the read's latency for a fresh deal). Never the snapshot's `as_of`: a
        bridge stamps it with its host's clock, not with the clock that dates the deals."""
        newest = max(times, default=None)
        if newest is None:
            return
        offset = newest - self.clock()
        known = self._offsets.get(account)
        if known is None or offset > known:
            self._offsets[account] = offset


def _left(end: float) -> float:
    return max(0.001, end - time.monotonic())


async def _within(read: Awaitable[T], end: float) -> T | ReadFailure:
    """The read, or a timeout failure when it overruns the round's deadline (a source that ignores the
    deadline it is given still cannot hold the round)."""
    try:
        async with asyncio.timeout(_left(end) + 0.5):  # (no task per read, unlike wait_for)
            return await read
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
