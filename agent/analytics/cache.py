"""Ledgers kept between requests, fed only the deals stored since: an account with 100,000 deals is read
and built once (~0.5 s), then each request adds what is new (~30 us per closed trade) and recomputes.

Deals reach the store in sweeps whose windows overlap (agent.events.poller), so a deal may be stored
slightly after a later one. Each refresh re-reads the last REFETCH of deals: an unseen deal there that
comes after the last one taken is added; one that comes before it (stored late) makes the ledger be
built again from every stored deal. A deal stored more than REFETCH late would be missed until the
account leaves the cache (MAX_ACCOUNTS, least recently used first).

The account's trade events are kept the same way (`tail_events`): the SL/TP histories the scores and
flags read (TRADE_OPENED, TRADE_UPDATED sl_tp) and the final scores TRADE_CLOSED events carry, fed only
the events stored after the last id taken. One account's events are written by one writer (its sync
process, or its shard), whose ids increase in commit order (agent.store.base.EventStore), so nothing
older can appear below that id later. Events pruned from the store stay here while the account does.
The behaviour flags are kept too, for the range and the facts they were computed from (`flags_for`).
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agent.analytics.behaviour import Flag, StopFacts
from agent.analytics.event_scores import score_from_event
from agent.analytics.ledger import Ledger
from agent.analytics.score import StopChange, TradeScore, stop_change
from agent.domain.trades import Deal, EventType, TradeEvent

OFFLOAD_ABOVE = 500  # events of one page taken in a worker thread (the caller holds the entry's lock)
REFETCH = timedelta(minutes=10)  # ten times the poller's deal overlap
MAX_ACCOUNTS = 8

Fetch = Callable[[datetime | None], Awaitable[list[Deal]]]  # the account's deals since (None: all)
FetchEvents = Callable[[int], Awaitable[list[TradeEvent]]]  # a page of its events with id > after, id order
TAILED = frozenset({EventType.TRADE_OPENED, EventType.TRADE_UPDATED, EventType.TRADE_CLOSED})


@dataclass
class CachedLedger:
    """One account's ledger; hold `lock` while refreshing it and while reading it (a refresh mutates)."""

    ledger: Ledger | None = None
    tickets: set[int] = field(default_factory=set)
    first: Deal | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rebuilds: int = 0
    events_after: int = 0  # the last event id taken
    stops: dict[int, list[StopChange]] = field(default_factory=dict)  # per trade, oldest first
    # per trade, its TRADE_CLOSED's data as stored; checked and parsed when first used (`final_score`):
    # only the newest trades of a range are scored, so most are never parsed
    closed_data: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    _final: dict[int, TradeScore | None] = field(default_factory=dict)
    events_read: int = 0  # events taken since the entry was made (tests, benches)
    stops_version: int = 0  # SL/TP changes taken (the flags' key: other events do not move them)
    _flags: tuple[Hashable, tuple[Flag, ...]] | None = None
    stop_facts: StopFacts = field(init=False)

    def __post_init__(self) -> None:
        self.stop_facts = StopFacts(self.stops)

    def final_score(self, identifier: int) -> TradeScore | None:
        """The final score the trade's TRADE_CLOSED carries (None: none, or not a valid one)."""
        if identifier in self._final:
            return self._final[identifier]
        data = self.closed_data.get(identifier)
        found = self._final[identifier] = None if data is None else score_from_event(identifier, dict(data))
        return found

    def flags_for(self, key: Hashable, compute: Callable[[], tuple[Flag, ...]]) -> tuple[Flag, ...]:
        """The flags of `key` (what they are computed from: the ledger's build, the range's trades, the
        broker offset, the SL/TP changes taken), computed again only when it changed."""
        if self._flags is None or self._flags[0] != key:
            self._flags = (key, compute())
        return self._flags[1]


class LedgerCache:
    def __init__(self, max_accounts: int = MAX_ACCOUNTS) -> None:
        self.max_accounts = max_accounts
        self._entries: OrderedDict[int, CachedLedger] = OrderedDict()

    def entry(self, account: int) -> CachedLedger:
        found = self._entries.get(account)
        if found is None:
            found = self._entries[account] = CachedLedger()
            while len(self._entries) > self.max_accounts:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(account)
        return found


async def refresh(
    entry: CachedLedger, fetch: Fetch, build: Callable[[list[Deal]], Awaitable[Ledger]]
) -> Ledger:
    """Bring the entry's ledger up to the stored deals (the caller holds `entry.lock`). `build` makes a
    ledger from every deal (off the event loop, it is the slow part)."""
    last = entry.ledger.last if entry.ledger is not None else None
    if entry.ledger is not None and last is not None:
        recent = await fetch(last[0] - REFETCH)
        new = [d for d in recent if d.ticket not in entry.tickets]
        if all((d.time, d.ticket) > last for d in new):
            entry.ledger.add(new)
            entry.tickets.update(d.ticket for d in new)
            return entry.ledger
    deals = await fetch(None)
    entry.ledger = await build(deals)
    entry.tickets = {d.ticket for d in deals}
    entry.first = deals[0] if deals else None
    entry.rebuilds += 1
    return entry.ledger


def take_events(entry: CachedLedger, events: Sequence[TradeEvent]) -> None:
    """Add events (id order, ids above `entry.events_after`) to the entry's stop histories and scores."""
    for e in events:
        if e.id is None or e.id <= entry.events_after:
            continue
        entry.events_after = e.id
        entry.events_read += 1
        data = e.data
        if e.type is EventType.TRADE_CLOSED:
            entry.closed_data[e.identifier] = data
            entry._final.pop(e.identifier, None)
            continue
        change = stop_change(e)
        if change is not None:  # stop_histories' order: by time, then by id (insort keeps ties in order)
            insort(entry.stops.setdefault(e.identifier, []), change, key=lambda c: c.time)
            entry.stop_facts.forget(e.identifier)
            entry.stops_version += 1


async def tail_events(entry: CachedLedger, fetch: FetchEvents, page: int) -> int:
    """Take the events stored since the last one taken (the caller holds `entry.lock`); how many."""
    before = entry.events_read
    while True:
        got = await fetch(entry.events_after)
        if len(got) > OFFLOAD_ABOVE:  # a cold read: tens of thousands of events, off the event loop
            await asyncio.get_running_loop().run_in_executor(None, take_events, entry, got)
        else:
            take_events(entry, got)
        if len(got) < page or got[-1].id is None:
            return entry.events_read - before
