"""Account statistics over the trades closed in a range (DESIGN.md section 12, MetaStats' meanings).

Every figure that would divide by zero, or that needs data the range does not have, is None and its
name is in `undefined` with the reason: never 0, never NaN. Money is exact (micro-units, see
agent.analytics.money); percentages are exact fractions until they are shown.

Conventions (docs/analytics.md says why):
- won: result > 0, lost: result < 0, breakeven: result == 0; a breakeven trade ends both streaks.
- expectancy: the mean result per trade; average_loss and worst_trade are negative amounts.
- a trade belongs to the day (broker and UTC) and the range it closed in; `balance` of a day is the
  account's balance after the last deal of that day (trades, partial closes and balance operations).
- a trade's return is its result over the balance before it (balance after its close minus its result);
  drawdown from balance is the largest fall of those returns compounded (time-weighted, so deposits and
  withdrawals are not gains or losses), in % of the running peak, the starting balance included.
- Sharpe and Sortino: over those per-trade returns, risk-free rate 0, not annualised; Sharpe with the
  sample standard deviation (n-1), Sortino with the downside deviation sqrt(mean(min(r, 0)**2)) over all
  n returns. Only with at least 30 trades.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from itertools import pairwise
from operator import mul
from typing import Protocol

from agent.analytics.ledger import Ledger
from agent.analytics.money import Units, to_decimal, to_units
from agent.domain.trades import DealType

MIN_TRADES_FOR_RATIOS = 30


class TimedEquity(Protocol):
    """A recorded equity value at an instant: `EquitySample`, or the store's `EquityPoint` as read."""

    @property
    def time(self) -> datetime: ...
    @property
    def equity(self) -> float: ...


@dataclass(frozen=True, slots=True)
class EquitySample:
    """Recorded equity at one instant (the account's `equity` as synced)."""

    time: datetime
    equity: float


@dataclass(frozen=True, slots=True)
class DayFigures:
    date: date
    start_utc: datetime  # when this day starts, in UTC
    profit: Decimal  # results of the trades closed that day
    balance: Decimal  # after the day's last deal
    trades: int


@dataclass(frozen=True, slots=True)
class Analytics:
    start: datetime | None
    end: datetime | None
    broker_utc_offset: timedelta
    trades: int
    won_trades: int
    lost_trades: int
    breakeven_trades: int
    won_trades_percent: Fraction | None
    lost_trades_percent: Fraction | None
    breakeven_trades_percent: Fraction | None
    profit: Decimal
    gross_profit: Decimal
    gross_loss: Decimal  # a positive amount
    profit_factor: Fraction | None
    profit_factor_infinite: bool
    expectancy: Decimal | None
    average_win: Decimal | None
    average_loss: Decimal | None
    best_trade: Decimal | None
    worst_trade: Decimal | None
    max_drawdown_balance_percent: float | None
    max_drawdown_equity_percent: float | None
    longest_win_streak: int
    longest_loss_streak: int
    average_trade_length_seconds: float | None
    long_trades: int
    short_trades: int
    long_won_trades_percent: Fraction | None
    short_won_trades_percent: Fraction | None
    commissions: Decimal
    swaps: Decimal
    fees: Decimal
    deposits: Decimal
    withdrawals: Decimal  # a positive amount
    other_balance_operations: Decimal  # credit, charges, corrections, bonuses, interest... (signed)
    sharpe_ratio: float | None
    sortino_ratio: float | None
    daily: tuple[DayFigures, ...]  # by broker day
    daily_utc: tuple[DayFigures, ...]
    undefined: dict[str, str] = field(default_factory=dict)  # field -> why it is None
    incomplete_trades: tuple[int, ...] = ()  # identifiers whose opening deal is not among the deals


def _in_range(t: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or t >= start) and (end is None or t < end)


def _mean(units: Units, n: int) -> Decimal:
    return to_decimal(units) / n


def compounded_max_drawdown(returns: Sequence[float]) -> float:
    """Largest fall (a fraction, >= 0) of the returns compounded from 1, the start included as a peak."""
    level = peak = 1.0
    worst = 0.0
    for r in returns:
        level *= 1.0 + r
        if level > peak:
            peak = level
        elif peak > 0:
            fall = 1.0 - level / peak
            if fall > worst:
                worst = fall
    return worst


def sharpe(returns: Sequence[float]) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    mean = math.fsum(returns) / n
    deviations = [r - mean for r in returns]
    var = math.fsum(map(mul, deviations, deviations)) / (n - 1)
    return None if var <= 0 else mean / math.sqrt(var)


def sortino(returns: Sequence[float]) -> float | None:
    n = len(returns)
    if n == 0:
        return None
    losses = [r for r in returns if r < 0]
    downside = math.sqrt(math.fsum(map(mul, losses, losses)) / n)
    return None if downside == 0 else (math.fsum(returns) / n) / downside


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = 86_400


def _days(ledger: Ledger, first: int, last: int, offset: timedelta) -> tuple[DayFigures, ...]:
    """The trades `first` to `last` (closing order) grouped by the day (at `offset` from UTC) they closed,
    and the balance after each day: per day, two bisections of the close times and a difference of two
    prefix sums (integer day arithmetic on POSIX seconds, not datetimes)."""
    if first >= last:
        return ()
    index, epochs = ledger.index, ledger.close_epochs
    cum = index.cum_result
    shift = offset.total_seconds()
    out = []
    i = first
    while i < last:
        key = int((epochs[i] + shift) // _DAY)
        j = max(bisect_left(epochs, (key + 1) * _DAY - shift, i, last), i + 1)  # first of a later day
        start_utc = _EPOCH + timedelta(days=key) - offset
        end_index = bisect_left(ledger.times, start_utc + timedelta(days=1))
        balance = ledger.balances[end_index - 1] if end_index else ledger.opening_balance
        day = (start_utc + offset).date()
        out.append(DayFigures(day, start_utc, to_decimal(cum[j] - cum[i]), to_decimal(balance), j - i))
        i = j
    return tuple(out)


def _streak(runs: list[int], first: int, last: int) -> int:
    """The longest run in [first, last) of `runs` (run lengths ending at each trade): a run that began
    before `first` counts only from `first`."""
    if first >= last:
        return 0
    k = first
    while k < last and runs[k] > k - first + 1:  # still the run that began before the range
        k += 1
    head = k - first  # its length inside the range
    return max(head, max(runs[k:last], default=0))


def _equity_drawdown(
    samples: Sequence[TimedEquity], ledger: Ledger, start: datetime | None, end: datetime | None
) -> tuple[float | None, str | None]:
    """Max drawdown (%) of recorded equity in the range: the largest peak-to-trough fall of the samples,
    with the balance operations between two samples taken out (a withdrawal is not a loss, a deposit not
    a gain): each step's return is (equity - operations since the last sample) / last equity - 1, and
    the returns are compounded. Samples come sorted from the store (sorted here otherwise); the range is
    two bisections, the returns one list comprehension, and only the steps with an operation (few) are
    handled one by one: 43,000 samples (30 days, one a minute) in a few ms."""
    times = [s.time for s in samples]
    if times != sorted(times):
        samples = sorted(samples, key=lambda s: s.time)
        times = [s.time for s in samples]
    lo = bisect_left(times, start) if start is not None else 0
    hi = bisect_left(times, end) if end is not None else len(times)
    if hi - lo < 2:
        return None, "no_equity_history"
    times = times[lo:hi]
    equities = [s.equity for s in samples[lo:hi]]
    moved: dict[int, Units] = {}  # step (index of its later sample) -> balance operations in it
    op_times = [o.time for o in ledger.operations]  # in time order; those at or before the first sample
    ops = ledger.operations[bisect_right(op_times, times[0]) : bisect_right(op_times, times[-1])]  # are in it
    for o in ops:
        step = bisect_left(times, o.time)  # the first sample at or after it: prev.time < o.time <= cur.time
        moved[step] = moved.get(step, 0) + o.amount
    nets = {step: to_units(equities[step]) - amount for step, amount in moved.items() if amount}
    if min(equities) <= 0 or any(net <= 0 for net in nets.values()):  # rare: the steps in order
        for i in range(1, len(equities)):
            if equities[i - 1] <= 0:
                return None, "nonpositive_equity"  # no return can be measured from it
            if (nets[i] if i in nets else equities[i]) <= 0:
                return 100.0, None  # all was lost (net of the operations): no fall can be larger
    returns = [cur / prev - 1.0 for prev, cur in pairwise(equities)]  # the steps without operations
    for step, net in nets.items():
        returns[step - 1] = float(net / to_units(equities[step - 1])) - 1.0
    return compounded_max_drawdown(returns) * 100.0, None


def compute(
    ledger: Ledger,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    broker_utc_offset: timedelta = timedelta(0),
    equity: Sequence[TimedEquity] = (),
) -> Analytics:
    """The statistics of the trades `ledger` saw close in [start, end) (either bound optional)."""
    undefined: dict[str, str] = {}
    first = bisect_left(ledger.close_times, start) if start is not None else 0
    last = bisect_left(ledger.close_times, end) if end is not None else len(ledger.closed)
    x = ledger.index  # prefix sums over the closed trades: each figure is cum[last] - cum[first]
    n = last - first
    won_n = x.cum_won[last] - x.cum_won[first]
    lost_n = x.cum_lost[last] - x.cum_lost[first]
    gross_profit: Units = x.cum_gross_profit[last] - x.cum_gross_profit[first]
    gross_loss: Units = x.cum_gross_loss[last] - x.cum_gross_loss[first]
    total: Units = gross_profit - gross_loss

    def pct(part: int, whole: int, name: str, reason: str) -> Fraction | None:
        if whole == 0:
            undefined[name] = reason
            return None
        return Fraction(100 * part, whole)

    won_pct = pct(won_n, n, "won_trades_percent", "no_trades")
    lost_pct = pct(lost_n, n, "lost_trades_percent", "no_trades")
    be_pct = pct(n - won_n - lost_n, n, "breakeven_trades_percent", "no_trades")

    profit_factor: Fraction | None = None
    infinite = False
    if n == 0:
        undefined["profit_factor"] = "no_trades"
    elif gross_loss == 0:
        infinite = gross_profit > 0
        undefined["profit_factor"] = "no_losing_trades"
    else:
        profit_factor = Fraction(gross_profit) / Fraction(gross_loss)

    def avg(amount: Units, count: int, name: str, reason: str) -> Decimal | None:
        if not count:
            undefined[name] = reason
            return None
        return _mean(amount, count)

    expectancy = avg(total, n, "expectancy", "no_trades")
    average_win = avg(gross_profit, won_n, "average_win", "no_winning_trades")
    average_loss = avg(-gross_loss, lost_n, "average_loss", "no_losing_trades")
    best = worst = None
    if n:
        results = x.results[first:last]
        best, worst = to_decimal(max(results)), to_decimal(min(results))
    else:
        undefined["best_trade"] = undefined["worst_trade"] = "no_trades"

    win_streak = _streak(x.win_run, first, last)
    loss_streak = _streak(x.loss_run, first, last)

    timed = x.cum_complete[last] - x.cum_complete[first]
    held_us = x.cum_held_us[last] - x.cum_held_us[first]
    average_length = (held_us / 10**6) / timed if timed else None  # as timedelta.total_seconds() / n
    if average_length is None:
        undefined["average_trade_length_seconds"] = "no_trades"

    longs = x.cum_long[last] - x.cum_long[first]
    shorts = x.cum_short[last] - x.cum_short[first]
    long_won = pct(
        x.cum_long_won[last] - x.cum_long_won[first], longs, "long_won_trades_percent", "no_long_trades"
    )
    short_won = pct(
        x.cum_short_won[last] - x.cum_short_won[first], shorts, "short_won_trades_percent", "no_short_trades"
    )

    returns: list[float] | None = None
    if x.cum_nonpositive[last] == x.cum_nonpositive[first]:
        returns = x.returns[first:last]
    drawdown: float | None = None
    if n == 0:
        undefined["max_drawdown_balance_percent"] = "no_trades"
    elif returns is None:
        undefined["max_drawdown_balance_percent"] = "nonpositive_balance"
    else:
        drawdown = compounded_max_drawdown(returns) * 100.0

    sharpe_ratio = sortino_ratio = None
    if n < MIN_TRADES_FOR_RATIOS:
        undefined["sharpe_ratio"] = undefined["sortino_ratio"] = f"fewer_than_{MIN_TRADES_FOR_RATIOS}_trades"
    elif returns is None:
        undefined["sharpe_ratio"] = undefined["sortino_ratio"] = "nonpositive_balance"
    else:
        sharpe_ratio, sortino_ratio = sharpe(returns), sortino(returns)
        if sharpe_ratio is None:
            undefined["sharpe_ratio"] = "zero_variance"
        if sortino_ratio is None:
            undefined["sortino_ratio"] = "no_losing_trades"

    equity_dd, equity_reason = _equity_drawdown(equity, ledger, start, end)
    if equity_reason is not None:
        undefined["max_drawdown_equity_percent"] = equity_reason

    ops = [o for o in ledger.operations if _in_range(o.time, start, end)]
    deposits: Units = sum((o.amount for o in ops if o.type is DealType.BALANCE and o.amount > 0), 0)
    withdrawals: Units = -sum((o.amount for o in ops if o.type is DealType.BALANCE and o.amount < 0), 0)
    other: Units = sum((o.amount for o in ops if o.type is not DealType.BALANCE), 0)

    return Analytics(
        start=start,
        end=end,
        broker_utc_offset=broker_utc_offset,
        trades=n,
        won_trades=won_n,
        lost_trades=lost_n,
        breakeven_trades=n - won_n - lost_n,
        won_trades_percent=won_pct,
        lost_trades_percent=lost_pct,
        breakeven_trades_percent=be_pct,
        profit=to_decimal(total),
        gross_profit=to_decimal(gross_profit),
        gross_loss=to_decimal(gross_loss),
        profit_factor=profit_factor,
        profit_factor_infinite=infinite,
        expectancy=expectancy,
        average_win=average_win,
        average_loss=average_loss,
        best_trade=best,
        worst_trade=worst,
        max_drawdown_balance_percent=drawdown,
        max_drawdown_equity_percent=equity_dd,
        longest_win_streak=win_streak,
        longest_loss_streak=loss_streak,
        average_trade_length_seconds=average_length,
        long_trades=longs,
        short_trades=shorts,
        long_won_trades_percent=long_won,
        short_won_trades_percent=short_won,
        commissions=to_decimal(x.cum_commission[last] - x.cum_commission[first]),
        swaps=to_decimal(x.cum_swap[last] - x.cum_swap[first]),
        fees=to_decimal(x.cum_fee[last] - x.cum_fee[first]),
        deposits=to_decimal(deposits),
        withdrawals=to_decimal(withdrawals),
        other_balance_operations=to_decimal(other),
        sharpe_ratio=sharpe_ratio,
        sortino_ratio=sortino_ratio,
        daily=_days(ledger, first, last, broker_utc_offset),
        daily_utc=_days(ledger, first, last, timedelta(0)),
        undefined=undefined,
        incomplete_trades=tuple(
            ledger.closed[i].identifier
            for i in x.incomplete[bisect_left(x.incomplete, first) : bisect_left(x.incomplete, last)]
        ),
    )
