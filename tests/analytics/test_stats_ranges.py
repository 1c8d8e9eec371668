"""The figures of any sub-range come from the ledger's prefix sums (agent.analytics.ledger.ClosedIndex):
checked against a plain walk over the trades closed in the range (ranges cutting through streaks and
days, any broker offset), with the ledger fed in batches and computed between them (the index extended
piecemeal), and rebased between two answers (its returns built again)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analytics import Ledger, compute
from agent.analytics.ledger import Trade
from agent.analytics.money import to_decimal, to_units
from agent.analytics.stats import compounded_max_drawdown
from agent.domain.trades import DealEntry, PositionType
from tests.analytics.deals import Deals, at
from tests.analytics.test_stats_properties import build, trade_spec

T0 = at(1, 0)


def reference(book: Ledger, start: datetime, end: datetime, offset: timedelta) -> dict[str, object]:
    """The figures by walking every trade closed in [start, end)."""
    trades: list[Trade] = [t for t in book.closed if t.close_time is not None and start <= t.close_time < end]
    results = [t.result for t in trades]
    win = loss = best_win = best_loss = 0
    for r in results:
        win, loss = (win + 1, 0) if r > 0 else (0, loss + 1) if r < 0 else (0, 0)
        best_win, best_loss = max(best_win, win), max(best_loss, loss)
    days: dict[object, list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    for t in trades:
        assert t.close_time is not None
        day = (t.close_time + offset).date()
        days[day][0] += to_decimal(t.result)
        days[day][1] += 1
    timed = [t for t in trades if t.complete]
    held = sum((t.close_time - t.open_time for t in timed if t.close_time is not None), timedelta(0))
    bases = [t.balance_before for t in trades]
    ok = all(b is not None and b > 0 for b in bases)
    return {
        "trades": len(trades),
        "won": sum(r > 0 for r in results),
        "lost": sum(r < 0 for r in results),
        "profit": to_decimal(sum(results, 0)),
        "best": to_decimal(max(results)) if results else None,
        "worst": to_decimal(min(results)) if results else None,
        "streaks": (best_win, best_loss),
        "length": held.total_seconds() / len(timed) if timed else None,
        "longs": sum(t.side is PositionType.BUY for t in trades),
        "long_won": sum(t.side is PositionType.BUY and t.result > 0 for t in trades),
        "commissions": to_decimal(sum((t.commission for t in trades), 0)),
        "swaps": to_decimal(sum((t.swap for t in trades), 0)),
        "incomplete": tuple(t.identifier for t in trades if not t.complete),
        "days": [(d, p, n) for d, (p, n) in sorted(days.items())],
        "drawdown": compounded_max_drawdown([float(t.result / b) for t, b in zip(trades, bases, strict=True)])
        * 100
        if trades and ok
        else None,
    }


def figures(book: Ledger, start: datetime, end: datetime, offset: timedelta) -> dict[str, object]:
    a = compute(book, start=start, end=end, broker_utc_offset=offset)
    long_won = a.long_won_trades_percent
    return {
        "trades": a.trades,
        "won": a.won_trades,
        "lost": a.lost_trades,
        "profit": a.profit,
        "best": a.best_trade,
        "worst": a.worst_trade,
        "streaks": (a.longest_win_streak, a.longest_loss_streak),
        "length": a.average_trade_length_seconds,
        "longs": a.long_trades,
        "long_won": round(long_won * a.long_trades / 100) if long_won is not None else 0,
        "commissions": a.commissions,
        "swaps": a.swaps,
        "incomplete": a.incomplete_trades,
        "days": [(d.date, d.profit, d.trades) for d in a.daily],
        "drawdown": a.max_drawdown_balance_percent,
    }


@settings(max_examples=80, deadline=None)
@given(
    st.lists(trade_spec, max_size=40),
    st.lists(st.tuples(st.integers(0, 40 * 24 * 60), st.integers(0, 40 * 24 * 60)), min_size=1, max_size=6),
    st.integers(min_value=-14 * 4, max_value=14 * 4),
    st.integers(min_value=1, max_value=5),
)
def test_any_range_equals_a_walk_over_its_trades(
    specs: list, ranges: list[tuple[int, int]], quarter_hours: int, batches: int
) -> None:
    whole, _ = build(specs)
    deals = [d for t in whole.closed for d in t.deals] + [
        d for t in whole.trades.values() if not t.closed for d in t.deals
    ]
    deals = sorted({d.ticket: d for d in deals}.values(), key=lambda d: (d.time, d.ticket))
    offset = timedelta(minutes=15 * quarter_hours)
    book = Ledger()
    size = max(1, len(deals) // batches)
    for k in range(0, max(len(deals), 1), size):  # fed in batches, computed between them
        book.add(deals[k : k + size])
        compute(book, broker_utc_offset=offset)
    for a, b in ranges:
        start, end = T0 + timedelta(minutes=min(a, b)), T0 + timedelta(minutes=max(a, b))
        assert figures(book, start, end, offset) == reference(book, start, end, offset)


def test_a_rebase_between_two_answers_rebuilds_the_returns() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    for i, profit in enumerate([100.0, -200.0, 50.0]):
        d.trade(i + 1, at(1, 1 + i), "buy", DealEntry.IN, 0.1)
        d.trade(i + 1, at(1, 1 + i, 30), "sell", DealEntry.OUT, 0.1, profit=profit)
    book = Ledger()
    book.add(d.deals)
    first = compute(book).max_drawdown_balance_percent  # 1000 -> 1100 -> 900 -> 950: peak 1100, trough 900
    assert first == pytest.approx((1 - 0.9 / 1.1) * 100, rel=1e-12)
    book.rebase(to_units(9_000.0))  # balances measured from 9,000 more: every return shrinks
    again = compute(book).max_drawdown_balance_percent
    fresh = Ledger(to_units(9_000.0))
    fresh.add(d.deals)
    assert again == compute(fresh).max_drawdown_balance_percent
    assert again == pytest.approx((1 - 9_900 / 10_100) * 100, rel=1e-12)
