"""Behavioural flags over an account's history, each raised with its evidence (trade identifiers) and not
raised on a clean history; too little history is 'not judged', never 'fine'."""

from __future__ import annotations

from datetime import datetime, timedelta

from agent.analytics import Ledger
from agent.analytics.behaviour import flags
from agent.analytics.score import StopChange
from agent.domain.trades import DealEntry
from tests.analytics.deals import Deals, at


def _book(trades: list[tuple[int, datetime, float, float, timedelta]]) -> Ledger:
    """(identifier, open time, volume, result, held) -> a ledger of closed buys."""
    d = Deals()
    d.balance(at(1, 0) - timedelta(days=1), 100_000.0)
    events = []
    for pid, opened, volume, result, held in trades:
        events.append((opened, pid, DealEntry.IN, volume, 0.0))
        events.append((opened + held, pid, DealEntry.OUT, volume, result))
    for when, pid, entry, volume, result in sorted(events, key=lambda e: (e[0], e[2] is DealEntry.IN)):
        d.trade(pid, when, "buy" if entry is DealEntry.IN else "sell", entry, volume, profit=result)
    book = Ledger()
    book.add(d.deals)
    return book


def _by_name(book: Ledger, stops: dict[int, list[StopChange]] | None = None) -> dict:
    return {f.flag: f for f in flags(book.closed, stops or {})}


M = timedelta(minutes=1)


def test_revenge_and_martingale_raised_with_the_trades_as_evidence() -> None:
    book = _book([
        (1, at(1, 9), 0.1, -50.0, 10 * M),
        (2, at(1, 9, 15), 0.2, -80.0, 10 * M),  # 5 min after 1's loss, doubled
        (3, at(1, 9, 30), 0.4, 120.0, 10 * M),  # 5 min after 2's loss, doubled again
        (4, at(1, 12), 0.1, -10.0, 10 * M),
        (5, at(1, 14), 0.5, 10.0, 10 * M),  # 1 h 50 after the loss: not "soon"
    ])  # fmt: skip
    f = _by_name(book)
    assert f["revenge_trading"].raised and f["revenge_trading"].evidence == (1, 2, 2, 3)
    assert f["martingale_sizing"].raised and f["martingale_sizing"].evidence == (1, 2, 2, 3)


def test_holding_losers_longer_than_winners() -> None:
    trades = [(i, at(1 + i, 9), 0.1, 10.0, 10 * M) for i in range(1, 6)]
    trades += [(i, at(1 + i, 13), 0.1, -10.0, 60 * M) for i in range(6, 11)]
    f = _by_name(_book(trades))["holding_losers_longer"]
    assert f.raised and f.judged and f.evidence == (6, 7, 8, 9, 10)
    assert f.reason == "losers held 3600 s on average, winners 600 s (raised above 1.5x)"


def test_trading_without_stops_counts_trades_whose_stop_was_seen() -> None:
    book = _book([(i, at(1 + i, 9), 0.1, 5.0, 10 * M) for i in range(1, 7)])
    opened = {t.identifier: t.open_time for t in book.closed}
    stops = {i: [StopChange(opened[i], 1.09, 0.0)] for i in (1, 2, 3)}
    stops |= {i: [StopChange(opened[i], 0.0, 0.0), StopChange(opened[i] + 5 * M, 1.09, 0.0)] for i in (4, 5)}
    f = _by_name(book, stops)["trading_without_stops"]  # 6 was never seen: not counted
    assert f.raised and f.evidence == (4, 5) and f.reason.startswith("2 of 5 trades")


def test_over_trading_against_the_accounts_own_median_day() -> None:
    trades = [(i, at(1 + i, 9), 0.1, 5.0, 10 * M) for i in range(1, 6)]  # one a day for 5 days
    trades += [(10 + i, at(10, 9, 10 * i), 0.1, 5.0, 5 * M) for i in range(5)]  # 5 on the 10th
    f = _by_name(_book(trades))["over_trading"]
    assert f.raised and f.evidence == (10, 11, 12, 13, 14)


def test_a_clean_history_raises_nothing_and_a_short_one_is_not_judged() -> None:
    clean = _book([(i, at(1 + i, 9), 0.1, 5.0 if i % 2 else -5.0, 30 * M) for i in range(1, 12)])
    opened = {t.identifier: t.open_time for t in clean.closed}
    f = _by_name(clean, {i: [StopChange(opened[i], 1.0, 0.0)] for i in opened})
    assert not any(flag.raised for flag in f.values()) and all(flag.judged for flag in f.values())
    short = _by_name(_book([(1, at(1, 9), 0.1, 5.0, M)]))
    assert not short["holding_losers_longer"].judged and not short["over_trading"].judged
    assert not short["trading_without_stops"].judged
