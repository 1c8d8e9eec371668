"""Every figure of DESIGN.md section 12 on a hand-computed history: a deposit and a withdrawal mid-range,
commissions and swaps, a breakeven trade, partial closes, a reversal, a trade that closes on another
broker day (UTC+2) than UTC day. The expected numbers are worked out in the comments."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from agent.analytics import EquitySample, Ledger, compute
from agent.domain.trades import DealEntry, DealType, PositionType
from tests.analytics.deals import ACCOUNT, Deals, at

IN, OUT, INOUT = DealEntry.IN, DealEntry.OUT, DealEntry.INOUT
BROKER = timedelta(hours=2)


def history(account: int = ACCOUNT) -> Deals:
    d = Deals(account)
    d.balance(at(2, 8), 10000.0)  # balance 10000
    # 101 long: -3.5 + (100 - 3.5) = 93
    d.trade(101, at(2, 9), "buy", IN, 1.0, commission=-3.5)
    d.trade(101, at(2, 10), "sell", OUT, 1.0, profit=100.0, commission=-3.5)
    # 102 short: -1.75 + (-50 - 1.75 - 0.5) = -54
    d.trade(102, at(2, 11), "sell", IN, 0.5, commission=-1.75, symbol="GBPUSD")
    d.trade(102, at(2, 12), "buy", OUT, 0.5, profit=-50.0, commission=-1.75, swap=-0.5, symbol="GBPUSD")
    # 104 long, two partial closes, the last at 22:30 UTC = 00:30 broker time on the 3rd:
    # -7 + (40 - 3.5) + (60 - 3.5 - 1.2) = 84.8
    d.trade(104, at(2, 13), "buy", IN, 2.0, commission=-7.0)
    d.trade(104, at(2, 14), "sell", OUT, 1.0, profit=40.0, commission=-3.5)
    # 103 breakeven: -1 + (2 - 1) = 0
    d.trade(103, at(2, 15), "buy", IN, 0.1, commission=-1.0)
    d.trade(103, at(2, 15, 30), "sell", OUT, 0.1, profit=2.0, commission=-1.0)
    d.trade(104, at(2, 22, 30), "sell", OUT, 1.0, profit=60.0, commission=-3.5, swap=-1.2)
    d.balance(at(3, 9), 5000.0)  # deposit mid-range
    d.balance(at(3, 10), -1000.0)  # withdrawal
    # 105 reversal (netting): long 1, INOUT sell 2 (closes 1, opens 1 short), OUT buy 1:
    # -3.5 + (-30 - 7) + (20 - 3.5) = -24
    d.trade(105, at(3, 11), "buy", IN, 1.0, commission=-3.5)
    d.trade(105, at(3, 12), "sell", INOUT, 2.0, profit=-30.0, commission=-7.0)
    d.trade(105, at(3, 13), "buy", OUT, 1.0, profit=20.0, commission=-3.5)
    # 106 short held two days, swaps and a fee: 30 - 4.4 - 0.1 = 25.5
    d.trade(106, at(3, 14), "sell", IN, 0.2)
    d.trade(106, at(5, 14), "buy", OUT, 0.2, profit=30.0, swap=-4.4, fee=-0.1)
    return d


def ledger() -> Ledger:
    book = Ledger()
    book.add(history().deals)
    return book


def test_trades_are_position_identifiers_and_balance_operations_are_not_trades() -> None:
    book = ledger()
    assert [t.identifier for t in book.closed] == [101, 102, 103, 104, 105, 106]
    results = {t.identifier: t.result for t in book.closed}
    assert results == {101: 93_000_000, 102: -54_000_000, 103: 0, 104: 84_800_000, 105: -24_000_000,
                       106: 25_500_000}  # fmt: skip
    reversal = book.trades[105]
    assert reversal.side is PositionType.BUY and reversal.close_time == at(3, 13) and len(reversal.deals) == 3
    assert [o.amount for o in book.operations] == [10_000_000_000, 5_000_000_000, -1_000_000_000]
    assert book.balance == 14_125_300_000  # 15000 - 1000 + 125.3


def test_every_figure_over_the_whole_history() -> None:
    a = compute(ledger(), broker_utc_offset=BROKER)
    assert (a.trades, a.won_trades, a.lost_trades, a.breakeven_trades) == (6, 3, 2, 1)
    assert a.won_trades_percent == 50 and a.lost_trades_percent == Fraction(100, 3)
    assert a.breakeven_trades_percent == Fraction(50, 3)
    assert (a.gross_profit, a.gross_loss, a.profit) == (Decimal("203.3"), Decimal("78"), Decimal("125.3"))
    assert a.profit_factor == Fraction(2033, 780) and not a.profit_factor_infinite
    assert a.expectancy == Decimal("125.3") / 6
    assert a.average_win == Decimal("203.3") / 3 and a.average_loss == Decimal("-39")
    assert (a.best_trade, a.worst_trade) == (Decimal("93"), Decimal("-54"))
    assert (a.longest_win_streak, a.longest_loss_streak) == (1, 1)  # W L B W L W by close time
    # lengths: 1 h, 1 h, 30 min, 9.5 h, 2 h, 48 h
    assert a.average_trade_length_seconds == (3600 + 3600 + 1800 + 34200 + 7200 + 172800) / 6
    assert (a.long_trades, a.short_trades) == (4, 2)  # 101, 103, 104, 105 (opened long) / 102, 106
    assert a.long_won_trades_percent == 50 and a.short_won_trades_percent == 50
    assert (a.commissions, a.swaps, a.fees) == (Decimal("-40.5"), Decimal("-6.1"), Decimal("-0.1"))
    assert (a.deposits, a.withdrawals, a.other_balance_operations) == (Decimal(15000), Decimal(1000), 0)
    # the only fall: 102 lost 54 of the 10093 it was measured against
    assert a.max_drawdown_balance_percent == pytest.approx(54 / 10093 * 100, rel=1e-12)
    assert a.sharpe_ratio is None and a.sortino_ratio is None
    assert a.undefined == {
        "sharpe_ratio": "fewer_than_30_trades",
        "sortino_ratio": "fewer_than_30_trades",
        "max_drawdown_equity_percent": "no_equity_history",
    }
    assert a.incomplete_trades == ()


def test_daily_by_broker_day_and_by_utc_day() -> None:
    a = compute(ledger(), broker_utc_offset=BROKER)
    broker = [(d.date, d.start_utc, d.profit, d.balance, d.trades) for d in a.daily]
    assert broker == [
        # 101, 102, 103 (104's last close is 00:30 on the 3rd in broker time); balance after 15:30 UTC
        (date(2026, 3, 2), datetime(2026, 3, 1, 22, tzinfo=UTC), Decimal("39"), Decimal("10068.5"), 3),
        (date(2026, 3, 3), datetime(2026, 3, 2, 22, tzinfo=UTC), Decimal("60.8"), Decimal("14099.8"), 2),
        (date(2026, 3, 5), datetime(2026, 3, 4, 22, tzinfo=UTC), Decimal("25.5"), Decimal("14125.3"), 1),
    ]
    utc = [(d.date, d.profit, d.balance, d.trades) for d in a.daily_utc]
    assert utc == [
        (date(2026, 3, 2), Decimal("123.8"), Decimal("10123.8"), 4),
        (date(2026, 3, 3), Decimal("-24"), Decimal("14099.8"), 1),
        (date(2026, 3, 5), Decimal("25.5"), Decimal("14125.3"), 1),
    ]
    assert sum(d.profit for d in a.daily) == sum(d.profit for d in a.daily_utc) == a.profit


def test_a_range_takes_the_trades_that_closed_in_it_and_its_balance_operations() -> None:
    a = compute(ledger(), start=at(3, 0), end=at(4, 0), broker_utc_offset=BROKER)
    assert a.trades == 1 and a.profit == Decimal("-24")  # 104 closed at 22:30 UTC on the 2nd: not in it
    assert (a.deposits, a.withdrawals) == (Decimal(5000), Decimal(1000))
    assert a.profit_factor == 0 and "profit_factor" not in a.undefined  # no gain over a real loss: 0
    assert a.undefined["average_win"] == "no_winning_trades" and a.average_loss == Decimal("-24")


def test_an_empty_range_is_null_with_reasons_never_zero() -> None:
    a = compute(ledger(), start=at(20, 0), end=at(21, 0))
    assert a.trades == 0 and a.daily == () and a.daily_utc == ()
    for name in ("won_trades_percent", "lost_trades_percent", "profit_factor", "expectancy", "best_trade",
                 "worst_trade", "max_drawdown_balance_percent", "average_trade_length_seconds"):  # fmt: skip
        assert getattr(a, name) is None and a.undefined[name] == "no_trades"


def test_profit_factor_without_losses_is_infinite_and_all_breakeven_is_undefined() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    d.trade(1, at(1, 1), "buy", IN, 1.0)
    d.trade(1, at(1, 2), "sell", OUT, 1.0, profit=10.0)
    book = Ledger()
    book.add(d.deals)
    a = compute(book)
    assert (
        a.profit_factor is None
        and a.profit_factor_infinite
        and a.undefined["profit_factor"] == "no_losing_trades"
    )
    d2 = Deals()
    d2.trade(1, at(1, 1), "buy", IN, 1.0, commission=-1.0)
    d2.trade(1, at(1, 2), "sell", OUT, 1.0, profit=1.0)
    book2 = Ledger(opening_balance=1_000_000_000)
    book2.add(d2.deals)
    b = compute(book2)
    assert b.breakeven_trades == 1 and b.profit_factor is None and not b.profit_factor_infinite


def test_open_trades_are_not_counted_and_a_close_without_its_opening_deal_is_flagged() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    d.trade(7, at(1, 1), "sell", OUT, 1.0, profit=5.0)  # opened before the deals we have
    d.trade(8, at(1, 2), "buy", IN, 1.0)  # still open
    d.trade(9, at(1, 3), "buy", IN, 1.0)
    d.trade(9, at(1, 4), "sell", OUT, 0.4, profit=2.0)  # partially closed: still open
    book = Ledger()
    book.add(d.deals)
    a = compute(book)
    assert a.trades == 1 and a.incomplete_trades == (7,) and (a.long_trades, a.short_trades) == (0, 0)
    assert {t.identifier for t in book.open_trades()} == {8, 9}
    assert a.average_trade_length_seconds is None  # its opening time is unknown


def test_other_balance_operations_are_neither_deposits_nor_trades() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    d.balance(at(1, 1), 50.0, DealType.CREDIT)
    d.balance(at(1, 2), -2.5, DealType.CHARGE)
    book = Ledger()
    book.add(d.deals)
    a = compute(book)
    assert (a.trades, a.deposits, a.withdrawals, a.other_balance_operations) == (
        0, Decimal(1000), Decimal(0), Decimal("47.5"),
    )  # fmt: skip


def test_streaks_and_equity_drawdown_with_a_deposit_between_samples() -> None:
    d = Deals()
    d.balance(at(1, 0), 1000.0)
    for i, profit in enumerate([5.0, 6.0, -1.0, -2.0, -3.0, 4.0]):
        d.trade(i + 1, at(1, 1 + i), "buy", IN, 0.1)
        d.trade(i + 1, at(1, 1 + i, 30), "sell", OUT, 0.1, profit=profit)
    d.balance(at(2, 12), 1000.0)
    book = Ledger()
    book.add(d.deals)
    # equity 1000 -> 1100 -> 990 (-10 %) -> 2000 after a 1000 deposit: 1000 of it is the deposit, so the
    # last step is 1000/990 - 1 (+1 %), not a gain of 102 %
    samples = [EquitySample(at(1, 0), 1000.0), EquitySample(at(1, 6), 1100.0), EquitySample(at(2, 0), 990.0),
               EquitySample(at(3, 0), 2000.0)]  # fmt: skip
    a = compute(book, equity=samples)
    assert (a.longest_win_streak, a.longest_loss_streak) == (2, 3)
    assert a.max_drawdown_equity_percent == pytest.approx(10.0, rel=1e-12)
    assert "max_drawdown_equity_percent" not in a.undefined


def test_deals_out_of_order_are_refused() -> None:
    d = history()
    book = Ledger()
    book.add(d.deals[:5])
    with pytest.raises(ValueError, match="not after"):
        book.add(d.deals[2:3])
