"""Properties over random histories (hypothesis): the percentages add up to exactly 100, the profit factor
is gross profit over gross loss, daily P&L (broker and UTC days) adds up to the trades' results and
nothing else (deposits, withdrawals and trades still open excluded), and computing never changes the
ledger's balance. Drawdown, Sharpe and Sortino are cross-checked against empyrical-reloaded on the same
per-trade returns, and drawdown from recorded equity on the same equity series."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

import empyrical
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.analytics import EquitySample, Ledger, compute
from agent.analytics.money import to_decimal
from agent.domain.trades import DealEntry
from tests.analytics.deals import Deals, at

cents = st.integers(min_value=-50_000, max_value=50_000)
trade_spec = st.tuples(
    st.sampled_from(["buy", "sell"]),
    cents,  # profit
    st.integers(min_value=-800, max_value=0),  # commission
    st.integers(min_value=-500, max_value=200),  # swap
    st.integers(min_value=1, max_value=3),  # closing deals (partial closes)
    st.integers(min_value=1, max_value=50 * 60),  # minutes held
    st.integers(min_value=-200_000, max_value=300_000),  # a balance operation before it (cents), 0: none
)


def build(
    specs: list[tuple[str, int, int, int, int, int, int]], open_left: int = 0
) -> tuple[Ledger, list[Decimal]]:
    """Trades one after another from a 100,000 deposit: the ledger, and each trade's expected result."""
    d = Deals()
    t = at(1, 0)
    d.balance(t, 100_000.0)
    expected: list[Decimal] = []
    for i, (side, profit, commission, swap, closes, minutes, op) in enumerate(specs):
        pid = 1000 + i
        t += timedelta(minutes=7)
        if op and op % 3 == 0:
            d.balance(t, op / 100)
            t += timedelta(seconds=1)
        other = "sell" if side == "buy" else "buy"
        d.trade(pid, t, side, DealEntry.IN, 0.3 * closes, commission=commission / 100)
        step = timedelta(minutes=minutes) / closes
        for k in range(closes):
            t += step
            last = k == closes - 1
            d.trade(
                pid,
                t,
                other,
                DealEntry.OUT,
                0.3,
                profit=profit / 100 if last else 0.0,
                swap=swap / 100 if last else 0.0,
            )
        expected.append(Decimal(profit + commission + (swap)) / 100)
    for j in range(open_left):
        t += timedelta(minutes=1)
        d.trade(9000 + j, t, "buy", DealEntry.IN, 1.0, commission=-1.0)
        d.trade(9000 + j, t + timedelta(seconds=1), "sell", DealEntry.OUT, 0.5, profit=3.0)
        t += timedelta(seconds=1)
    book = Ledger()
    book.add(d.deals)
    return book, expected


@settings(max_examples=150, deadline=None)
@given(st.lists(trade_spec, max_size=40), st.integers(min_value=-14 * 4, max_value=14 * 4), st.integers(0, 3))
def test_invariants(specs: list, quarter_hours: int, open_left: int) -> None:
    book, expected = build(specs, open_left)
    balance_before = book.balance
    a = compute(book, broker_utc_offset=timedelta(minutes=15 * quarter_hours))
    assert book.balance == balance_before  # computing never changes the balance
    assert a.trades == len(expected) and [to_decimal(t.result) for t in book.closed] == expected
    if a.trades:
        assert a.won_trades_percent + a.lost_trades_percent + a.breakeven_trades_percent == 100
        assert math.isclose(
            float(a.won_trades_percent) + float(a.lost_trades_percent) + float(a.breakeven_trades_percent),
            100,
        )
    else:
        assert a.won_trades_percent is None and a.undefined["won_trades_percent"] == "no_trades"
    gross_profit = sum((r for r in expected if r > 0), Decimal(0))
    gross_loss = -sum((r for r in expected if r < 0), Decimal(0))
    assert (a.gross_profit, a.gross_loss) == (gross_profit, gross_loss)
    if gross_loss:
        assert a.profit_factor == Fraction(gross_profit) / Fraction(gross_loss)
    else:
        assert a.profit_factor is None and a.profit_factor_infinite == (gross_profit > 0)
    total = sum(expected, Decimal(0))
    assert a.profit == total  # exact: no float rounding anywhere
    assert sum((d.profit for d in a.daily), Decimal(0)) == total
    assert sum((d.profit for d in a.daily_utc), Decimal(0)) == total
    assert sum(d.trades for d in a.daily) == a.trades
    for value in (a.max_drawdown_balance_percent, a.sharpe_ratio, a.sortino_ratio):
        assert value is None or math.isfinite(value)


def _returns(book: Ledger) -> list[float]:
    return [float(Fraction(t.result) / Fraction(t.balance_before)) for t in book.closed]


@settings(max_examples=60, deadline=None)
@given(st.lists(trade_spec, min_size=30, max_size=80))
def test_drawdown_sharpe_sortino_match_empyrical(specs: list) -> None:
    book, _ = build(specs)
    a = compute(book)
    returns = _returns(book)
    series = pd.Series(returns, index=pd.date_range("2026-01-01", periods=len(returns), freq="D"))
    # empyrical compounds from the first return: a 0 return first makes the starting balance a peak too
    with_start = pd.Series(
        [0.0, *returns], index=pd.date_range("2025-12-31", periods=len(returns) + 1, freq="D")
    )
    assert a.max_drawdown_balance_percent == pytest.approx(
        -empyrical.max_drawdown(with_start) * 100, abs=1e-9
    )
    if np.std(returns, ddof=1) > 0:
        expected_sharpe = empyrical.sharpe_ratio(series, risk_free=0.0, annualization=1)
        assert a.sharpe_ratio == pytest.approx(expected_sharpe, rel=1e-9)
    if any(r < 0 for r in returns):
        expected_sortino = empyrical.sortino_ratio(series, required_return=0.0, annualization=1)
        assert a.sortino_ratio == pytest.approx(expected_sortino, rel=1e-9)
    else:
        assert a.sortino_ratio is None and a.undefined["sortino_ratio"] == "no_losing_trades"


def test_sharpe_needs_30_trades() -> None:
    specs = [("buy", 1000 * (1 if i % 3 else -1), -10, 0, 1, 60, 0) for i in range(29)]
    assert compute(build(specs)[0]).undefined["sharpe_ratio"] == "fewer_than_30_trades"
    a = compute(build([*specs, ("sell", 500, 0, 0, 1, 60, 0)])[0])
    assert a.sharpe_ratio is not None and a.sortino_ratio is not None


equity_cents = st.integers(min_value=1, max_value=10_000_000)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(equity_cents, st.integers(min_value=-100_000, max_value=100_000)), min_size=2, max_size=60
    )
)
def test_equity_drawdown_matches_empyrical(steps: list[tuple[int, int]]) -> None:
    """Recorded equity points, with a balance operation (cents, 0: none) just before some of them: the
    drawdown equals empyrical's max_drawdown of the flow-adjusted returns of the same series."""
    d = Deals()
    samples, returns = [], []
    t = at(1, 0)
    previous: float | None = None
    for i, (equity, op) in enumerate(steps):
        t += timedelta(minutes=5)
        flow = op / 100 if i and op % 4 == 0 and op < equity else 0.0  # never more than the equity after it
        if flow:
            d.balance(t - timedelta(seconds=1), flow)
        samples.append(EquitySample(t, equity / 100))
        if previous is not None:
            returns.append((equity / 100 - flow) / previous - 1.0)
        previous = equity / 100
    book = Ledger()
    book.add(d.deals)
    a = compute(book, equity=samples)
    with_start = pd.Series([0.0, *returns], index=pd.date_range("2025-12-31", periods=len(returns) + 1))
    expected = -empyrical.max_drawdown(with_start) * 100
    assert a.max_drawdown_equity_percent == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert "max_drawdown_equity_percent" not in a.undefined


def test_equity_lost_net_of_a_deposit_is_a_100_percent_drawdown() -> None:
    d = Deals()
    d.balance(at(2, 0), 5_000.0)  # deposited, and equity after it is below the deposit: all was lost
    book = Ledger()
    book.add(d.deals)
    samples = [EquitySample(at(1, 0), 1_000.0), EquitySample(at(3, 0), 4_000.0), EquitySample(at(4, 0), 9e3)]
    assert compute(book, equity=samples).max_drawdown_equity_percent == 100.0
    zero = [EquitySample(at(1, 0), 1_000.0), EquitySample(at(1, 1), -20.0)]  # no operation: negative equity
    assert compute(Ledger(), equity=zero).max_drawdown_equity_percent == 100.0
