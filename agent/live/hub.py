"""The fan-out hub: every stored trade event, in id order, to every live subscription that wants it.

The positions poller reports what it stored (`on_events_stored`: cheap, never raises). A report is a
doorbell, not the log: accounts are polled concurrently, so two reports may arrive out of id order. The
hub's pump delivers strictly in id order from its cursor. A report that continues the cursor without a
hole is delivered as it came; otherwise (another account's report still to come, or an id a failed
MongoDB write claimed) the events after the cursor are read back from the store, whose ids increase in
commit order within one store object (agent.store.base.EventStore), so nothing older can appear there
later. The cursor starts at the store's latest id once the store answers (`ready`); a subscription made
after that receives every event stored after it was made.

Shards (issue 16): every shard writes its own accounts' events into the one store, and each shard's stream
delivers everyone's. With `tail` set the pump also reads the store for ids after its cursor: whenever the
store's change stream reports an insert (MongoDB where it has change streams: a replica set, or SecantusDB,
the test server; `EventStore` backends that offer `inserted()`), and every `tail` seconds in any case
(polling, the safety net, and all there is on a server without change streams). The change stream is only a
doorbell: events are always read by id, so the resume semantics stay those of the id. Two writers draw ids
from one counter but commit independently, so a lower id may land after a higher one: a hole in the ids is
waited for up to `settle` seconds (its writer is usually milliseconds behind), then passed (an id claimed by
a failed write never comes). An event committed later than that still reaches the store, the REST API and a
replay, not the live streams. Single writer (`tail` None): as before, a hole is never waited for.

Each event is serialised once (`encode`) and the same object is handed to every subscription that wants
it. A subscription whose consumer is idle may take it at once (`direct`: the stream writes the prebuilt
frame to the socket, no task switch per client); otherwise it is queued. The queue is bounded: when it is
full the subscription is marked overflowed and its `on_overflow` runs (the stream closes it with 4008;
the client resumes with `after`, losing nothing: the store still has every event).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agent.domain.tasks import cancel_and_wait
from agent.domain.trades import EventType, TradeEvent
from agent.store.base import EventStore

log = logging.getLogger("mt5_agent.live")

Item = tuple[int, Any]  # (event id, what `encode` made of it: one object shared by every subscription)
READ_PAGE = 500  # events per store read when the pump fills a hole
SETTLE_SECONDS = 2.0  # sharded: how long a hole in the ids is waited for before it is passed
LATE_WATCH_SECONDS = 300.0  # sharded: how long a passed hole is watched for an event landing late
LATE_WATCH_HOLES = 64  # passed holes watched at most (the oldest dropped first)
LATE_CHECK_SECONDS = 10.0  # how often the passed holes are read again (one store read per hole)
RETRY_SECONDS = 0.5  # after a failed store read (the events are stored: nothing is lost, only late)


class StreamObserver(Protocol):
    """What the stream reports (the telemetry implements it; every method is cheap and never raises)."""

    def on_stream_opened(self) -> None: ...

    def on_stream_closed(self, reason: str) -> None: ...

    def on_stream_sent(self, kind: str, count: int = 1) -> None: ...

    def on_stream_replayed(self, events: int) -> None: ...

    def on_stream_late(self, events: int) -> None: ...


class NullObserver:
    def on_stream_opened(self) -> None:
        pass

    def on_stream_closed(self, reason: str) -> None:
        pass

    def on_stream_sent(self, kind: str, count: int = 1) -> None:
        pass

    def on_stream_replayed(self, events: int) -> None:
        pass

    def on_stream_late(self, events: int) -> None:
        pass


@dataclass(eq=False)
class Subscription:
    """One stream's live filter and bounded queue. `client_id`: a client JWT's stream, which receives an
    account's events only while the account belongs to that client (checked as each event is published)."""

    accounts: frozenset[int] | None
    types: frozenset[EventType] | None
    client_id: str | None
    limit: int
    on_overflow: Callable[[], None] = lambda: None
    items: deque[Item] = field(default_factory=deque)
    overflowed: bool = False
    closed: bool = False  # unsubscribed (or overflowed): `take` returns at once
    # Set by the consumer while it is idle (nothing queued, waiting in `take`): takes an item at once,
    # False when it cannot now (a socket not draining), and then the item is queued.
    direct: Callable[[Item], bool] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, event: TradeEvent, owner: str | None) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.accounts is not None and event.account not in self.accounts:
            return False
        return self.client_id is None or owner == self.client_id

    def offer(self, item: Item) -> bool:
        """Hand the item over: True when `direct` took it, else queued (or, queue full, overflowed)."""
        if self.closed:
            return False
        if not self.items and self.direct is not None:
            try:
                if self.direct(item):
                    return True
            except Exception:  # the queue path then tries, and fails properly if the socket is gone
                log.exception("direct delivery failed")
                self.direct = None
        if len(self.items) >= self.limit:
            self.overflowed = True
            self.close()
            self.on_overflow()
            return False
        self.items.append(item)
        self._ready.set()
        return False

    def close(self) -> None:
        self.closed = True
        self.items.clear()
        self._ready.set()

    async def take(self, within: float) -> list[Item]:
        """Every queued item, waiting up to `within` seconds for one ([] on timeout, or once closed)."""
        if not self.items and not self.closed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, within)):
                    await self._ready.wait()
        if self.closed:
            return []
        out = list(self.items)
        self.items.clear()
        return out


class EventHub:
    def __init__(
        self,
        events: EventStore,
        *,
        encode: Callable[[TradeEvent], Any],
        owner: Callable[[int], str | None] = lambda account: None,
        observer: StreamObserver | None = None,
        page: int = READ_PAGE,
        retry: float = RETRY_SECONDS,
        tail: float | None = None,
        settle: float = SETTLE_SECONDS,
    ) -> None:
        self.events = events
        self.encode = encode
        self.owner = owner  # the client an account belongs to now (None: none)
        self.observer: StreamObserver = observer or NullObserver()
        self.page = page
        self.retry = retry
        self.cursor: int | None = None  # the id of the last event published (None: not ready yet)
        self._subs: dict[Subscription, None] = {}  # insertion-ordered set
        self._fanout: tuple[Subscription, ...] = ()  # a copy iterated while publishing
        self._pending: list[TradeEvent] = []
        self._bell = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.tail = tail  # seconds between two reads of the store for other writers' events (None: off)
        self.settle = settle
        self._hole: tuple[int, float] | None = None  # (first missing id, when first seen) while tailing
        # holes passed (first id, last id, when passed), watched so that an event landing in one is told
        self._passed: collections.deque[tuple[int, int, float]] = collections.deque(maxlen=LATE_WATCH_HOLES)
        self._late_checked = 0.0
        self._ticker: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.watching = False  # a change stream is ringing the bell (sharded, on a server that has one)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        for helper in (self._ticker, self._watcher):
            if helper is not None:
                await cancel_and_wait(helper)
        self._ticker = self._watcher = None
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self, within: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._ready.wait()
        return self._ready.is_set()

    # --- subscriptions -----------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        accounts: Iterable[int] | None,
        types: Iterable[EventType] | None,
        client_id: str | None,
        limit: int,
        on_overflow: Callable[[], None] = lambda: None,
    ) -> Subscription:
        """Register a subscription (the hub must be ready): it receives every event published from now
        on that it wants. Read the replay AFTER this, and drop live items at or below its last id."""
        if not self.ready:
            raise RuntimeError("the hub is not ready (the store has not answered yet)")
        sub = Subscription(
            accounts=frozenset(accounts) if accounts is not None else None,
            types=frozenset(types) if types is not None else None,
            client_id=client_id,
            limit=limit,
            on_overflow=on_overflow,
        )
        self._subs[sub] = None
        self._fanout = tuple(self._subs)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        sub.close()
        if self._subs.pop(sub, False) is None:
            self._fanout = tuple(self._subs)

    @property
    def subscriptions(self) -> int:
        return len(self._subs)

    # --- the doorbell (agent.events.poller.PollListener) --------------------------------------------

    def notify(self, events: Iterable[TradeEvent]) -> None:
        """Events just stored (with their ids): published in id order by the pump."""
        self._pending.extend(e for e in events if e.id is not None)
        self._bell.set()

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None:
        self.notify(events)

    def on_available(self, available: bool) -> None:
        pass

    def on_round(self, seconds: float) -> None:
        pass

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
        pass

    def on_account_failed(self, account: int, reason: str) -> None:
        pass

    def on_accounts(self, accounts: Iterable[int]) -> None:
        pass

    # --- the pump ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = 0.05
        while self.cursor is None:
            try:
                self.cursor = await self.events.latest_id()
            except Exception as exc:  # the store is opened by the sync's first cycle: wait for it
                log.debug("event hub: store not answering yet (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)
        self._ready.set()
        if self.tail is not None:
            loop = asyncio.get_running_loop()
            self._ticker = loop.create_task(self._tick(self.tail), name="event-hub-tail")
            if hasattr(self.events, "inserted"):
                self._watcher = loop.create_task(self._watch(), name="event-hub-watch")
        while True:
            await self._bell.wait()
            self._bell.clear()
            pending, self._pending = self._pending, []
            try:
                await self._advance(pending)
                if self._failing:
                    log.info("event hub: publishing again")
                self._failing = False
            except Exception as exc:
                if not self._failing:
                    log.warning("event hub: reading events back failed (%s); retrying", exc)
                self._failing = True
                self._pending[:0] = pending
                await asyncio.sleep(self.retry)
                self._bell.set()

    async def _tick(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self._bell.set()

    async def _watch(self) -> None:
        """Ring the bell on every insert the store's change stream reports; when the server has none, stop
        (polling goes on); on a failure, retry with backoff (polling covers the meantime)."""
        delay = 1.0
        while True:
            try:
                opened = False
                async for _ in self.events.inserted():  # type: ignore[attr-defined]
                    if not opened:  # its first item says the stream is open
                        opened = self.watching = True
                        log.info("event hub: following the store's change stream")
                        delay = 1.0
                    self._bell.set()
                if not opened:
                    return  # no change streams on this server: polling only
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("event hub: change stream failed (%s); retrying in %.0fs", exc, delay)
            self.watching = False
            await asyncio.sleep(delay)
            delay = min(2 * delay, 30.0)

    async def _advance(self, pending: list[TradeEvent]) -> None:
        cursor = self.cursor
        assert cursor is not None
        fresh = sorted({e.id: e for e in pending if e.id is not None and e.id > cursor}.values(), key=_id)
        if fresh and all(e.id == cursor + 1 + i for i, e in enumerate(fresh)):
            self.publish(fresh)  # no hole: as reported
            self._hole = None
            if self.tail is None:
                return
        if self.tail is not None:
            await self._tail()
            return
        if not fresh:
            return
        target = _id(fresh[-1])
        while cursor < target:
            page = await self.events.list_events(after=cursor, limit=self.page)
            if not page:  # pruned meanwhile: nothing left to publish up to the target
                self.cursor = target
                break
            self.publish(page)
            cursor = _id(page[-1])

    async def _tail(self) -> None:
        """Publish what the store holds after the cursor, waiting up to `settle` for a hole to fill."""
        loop = asyncio.get_running_loop()
        while True:
            cursor = self.cursor
            assert cursor is not None
            page = await self.events.list_events(after=cursor, limit=self.page)
            run: list[TradeEvent] = []
            expect = cursor + 1
            waiting = False
            for event in page:
                if _id(event) != expect:
                    now = loop.time()
                    if self._hole is None or self._hole[0] != expect:
                        self._hole = (expect, now)
                    if now - self._hole[1] < self.settle:
                        waiting = True
                        break
                    log.debug("event hub: ids %d-%d never came; passed", expect, _id(event) - 1)
                    self._passed.append((expect, _id(event) - 1, now))
                    self._hole = None
                run.append(event)
                expect = _id(event) + 1
            if run:
                self.publish(run)
            if waiting or len(page) < self.page:
                now = loop.time()
                if self._passed and now - self._late_checked >= LATE_CHECK_SECONDS:
                    self._late_checked = now
                    await self._watch_passed(now)
                return

    async def _watch_passed(self, now: float) -> None:
        """An event that lands in a passed hole (its writer was more than `settle` late) is not sent live,
        since the streams are past its id: say so (a warning and `mt5_stream_late_events_total`), never
        silently. Holes are watched for LATE_WATCH_SECONDS; most are ids a failed write claimed."""
        keep: list[tuple[int, int, float]] = []
        for first, last, passed_at in self._passed:
            if now - passed_at > LATE_WATCH_SECONDS:
                continue
            page = await self.events.list_events(after=first - 1, limit=min(last - first + 1, self.page))
            late = [_id(e) for e in page if first <= _id(e) <= last]
            if late:
                log.warning(
                    "event hub: event id(s) %s landed %.1f s or more after the stream passed them: in the "
                    "store and replays, not sent live",
                    ", ".join(map(str, late[:10])) + (" ..." if len(late) > 10 else ""),
                    self.settle,
                    extra={"late_events": len(late)},
                )
                self.observer.on_stream_late(len(late))
                if late[-1] < last:  # the ids after the last one seen stay watched; none is counted twice
                    keep.append((late[-1] + 1, last, passed_at))
                continue
            keep.append((first, last, passed_at))
        self._passed.clear()
        self._passed.extend(keep)

    def publish(self, events: Iterable[TradeEvent]) -> None:
        """Fan out events already in id order after the cursor: each encoded once, the same object handed
        to every subscription that wants it (direct deliveries are counted here, once per event)."""
        encode, owner = self.encode, self.owner
        for event in events:
            direct = 0
            frame = encode(event)
            try:
                owned_by = owner(event.account)
            except Exception:  # never let a lookup stop the fan-out; a client stream then skips it
                log.exception("event hub: owner lookup failed for account %d", event.account)
                owned_by = None
            item = (_id(event), frame)
            for sub in self._fanout:
                if sub.wants(event, owned_by) and sub.offer(item):
                    direct += 1
            self.cursor = item[0]
            if direct:
                self.observer.on_stream_sent("event", direct)


def _id(event: TradeEvent) -> int:
    assert event.id is not None
    return event.id
