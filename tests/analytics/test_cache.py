"""The ledger cache: new deals are added, a deal stored late (before the last one taken) rebuilds the
ledger, and the least recently asked account leaves first; events are taken once, in time order per
trade, TRADE_CLOSED scores checked when used, and each trade's stop facts kept until its stops change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent.analytics import Ledger
from agent.analytics.cache import LedgerCache, refresh, take_events
from agent.analytics.event_scores import score_from_event
from agent.analytics.score import RULES
from agent.domain.trades import Deal, DealEntry, EventType, TradeEvent
from tests.analytics.deals import Deals, at


async def test_refresh_adds_new_deals_and_rebuilds_on_a_late_one() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    d.trade(1, at(1, 1), "buy", DealEntry.IN, 1.0)
    d.trade(1, at(1, 2), "sell", DealEntry.OUT, 1.0, profit=5.0)
    stored: list[Deal] = list(d.deals)
    reads: list[datetime | None] = []

    async def fetch(since: datetime | None) -> list[Deal]:
        reads.append(since)
        return [
            x for x in sorted(stored, key=lambda x: (x.time, x.ticket)) if since is None or x.time >= since
        ]

    async def build(deals: list[Deal]) -> Ledger:
        ledger = Ledger()
        ledger.add(deals)
        return ledger

    entry = LedgerCache().entry(1)
    ledger = await refresh(entry, fetch, build)
    assert len(ledger.closed) == 1 and entry.rebuilds == 1 and reads == [None]
    stored += [
        d.trade(2, at(1, 3), "buy", DealEntry.IN, 1.0),
        d.trade(2, at(1, 4), "sell", DealEntry.OUT, 1.0),
    ]
    assert await refresh(entry, fetch, build) is ledger and len(ledger.closed) == 2 and entry.rebuilds == 1
    assert reads[-1] is not None  # only the recent deals were read
    late = d.trade(3, at(1, 3, 55), "sell", DealEntry.IN, 1.0)  # 5 min before the last one taken
    stored.append(late)
    rebuilt = await refresh(entry, fetch, build)
    assert rebuilt is not ledger and entry.rebuilds == 2 and reads[-1] is None
    assert {t.identifier for t in rebuilt.open_trades()} == {3}


def test_least_recently_asked_account_leaves_first() -> None:
    cache = LedgerCache(max_accounts=2)
    one = cache.entry(1)
    cache.entry(2)
    assert cache.entry(1) is one  # asked again: now the most recent
    cache.entry(3)  # 2 leaves
    assert cache.entry(1) is one and cache.entry(2) is not None
    assert cache.entry(3) is not cache.entry(1)


def _event(eid: int, identifier: int, kind: EventType, minute: int, data: dict[str, Any]) -> TradeEvent:
    when = datetime(2026, 3, 2, 9, minute, tzinfo=UTC)
    return TradeEvent(1, identifier, kind, f"k{eid}", when, when, "EURUSD", data, id=eid)


def test_events_are_taken_once_in_time_order_and_scores_parsed_when_used() -> None:
    entry = LedgerCache().entry(1)
    rules = [{"rule": n, "points": m, "max_points": m, "passed": True, "reason": "ok"} for n, m, _ in RULES]
    take_events(
        entry,
        [
            _event(1, 7, EventType.TRADE_UPDATED, 5, {"change": "sl_tp", "sl": 1.3, "tp": 0.0}),
            _event(2, 7, EventType.TRADE_OPENED, 1, {"sl": 1.2, "tp": 0.0}),  # stored later, earlier in time
            _event(3, 7, EventType.TRADE_UPDATED, 6, {"change": "volume", "volume": 0.5}),  # not a stop
            _event(
                4, 7, EventType.TRADE_CLOSED, 9, {"score": {"score": 10, "rules": rules}, "r_multiple": 2}
            ),
            _event(5, 8, EventType.TRADE_CLOSED, 9, {"score": {"score": 11, "rules": rules}}),  # out of 1-10
        ],
    )
    assert [s.sl for s in entry.stops[7]] == [1.2, 1.3] and entry.events_after == 5
    take_events(entry, [_event(2, 7, EventType.TRADE_OPENED, 1, {"sl": 9.9, "tp": 0.0})])  # seen: ignored
    assert len(entry.stops[7]) == 2 and entry.events_read == 5
    final = entry.final_score(7)
    assert final is not None and (final.score, final.points, final.max_points, final.r_multiple) == (
        10,
        10,
        10,
        2,
    )
    assert entry.final_score(8) is None and entry.final_score(9) is None
    bad_rule = [{**rules[0], "points": 3}, *rules[1:]]  # more than its maximum
    assert score_from_event(1, {"score": {"score": 10, "rules": bad_rule}}) is None
    nan = {"score": {"score": 10, "rules": rules}, "r_multiple": float("nan")}
    assert score_from_event(1, nan) is None


def test_stop_facts_are_kept_until_the_trades_stops_change() -> None:
    entry = LedgerCache().entry(1)
    d = Deals()
    d.trade(7, at(2, 9), "buy", DealEntry.IN, 1.0)
    d.trade(7, at(2, 10), "sell", DealEntry.OUT, 1.0, profit=5.0)
    ledger = Ledger()
    ledger.add(d.deals)
    (trade,) = ledger.closed
    take_events(entry, [_event(1, 7, EventType.TRADE_OPENED, 0, {"sl": None, "tp": None})])
    assert entry.stop_facts.of(trade) == (False, False)  # never seen
    take_events(entry, [_event(2, 7, EventType.TRADE_UPDATED, 30, {"change": "sl_tp", "sl": 1.0, "tp": 0})])
    assert entry.stop_facts.of(trade) == (True, True)  # seen, but 30 min after the open: bare
