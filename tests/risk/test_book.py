"""The risk book on hand-computed cases: largest open loss, net exposure with the symbol cap, equity peaks
(day and since tracking started), and the positions tap over a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.domain.accounts import AccountValues
from agent.domain.trades import Position
from agent.risk.book import OTHER_SYMBOLS, Drawdown, RiskBook, summarise, tap
from agent.store import open_store
from agent.store.base import Store
from agent.sync.fleet import AccountState, FleetSnapshot
from tests.events.factory import ACC, position, snapshot

DAY1 = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)


def pos(
    identifier: int,
    symbol: str,
    *,
    buy: bool = True,
    volume: float = 1.0,
    pnl: float = 0.0,
    swap: float = 0.0,
) -> Position:
    return replace(position(identifier, buy=buy, volume=volume, symbol=symbol), profit=pnl, swap=swap)


def test_largest_open_loss_counts_swap_and_is_zero_without_losers() -> None:
    risk = summarise(
        snapshot(
            0,
            pos(1, "EURUSD", pnl=-30.0, swap=-2.5),
            pos(2, "GBPUSD", pnl=-40.0, swap=8.0),
            pos(3, "XAUUSD", pnl=120.0),
        )
    )
    assert risk.largest_loss == 32.5  # -30 - 2.5 beats -40 + 8
    assert risk.positions == 3
    assert summarise(snapshot(0, pos(1, "EURUSD", pnl=5.0, swap=-5.0))).largest_loss == 0.0
    assert summarise(snapshot(0)).largest_loss == 0.0 and summarise(snapshot(0)).exposure == ()


def test_net_exposure_nets_buys_and_sells_per_symbol() -> None:
    risk = summarise(
        snapshot(
            0,
            pos(1, "EURUSD", volume=1.5),
            pos(2, "EURUSD", buy=False, volume=0.5),
            pos(3, "USDJPY", buy=False, volume=0.3),
        )
    )
    assert risk.exposure == (("EURUSD", 1.0), ("USDJPY", -0.3))


def test_symbols_beyond_the_cap_are_summed_as_other() -> None:
    positions = [pos(i, f"SYM{i}", volume=i / 10, buy=i % 2 == 0) for i in range(1, 8)]
    positions.append(pos(99, "bad\nsymbol", volume=2.0))  # not a label value: goes to `other` as well
    risk = summarise(snapshot(0, *positions), symbols=3)
    assert [s for s, _ in risk.exposure] == ["SYM7", "SYM6", "SYM5", OTHER_SYMBOLS]
    assert dict(risk.exposure)["SYM7"] == -0.7 and dict(risk.exposure)["SYM6"] == 0.6
    # SYM1..SYM4 = -0.1 + 0.2 - 0.3 + 0.4, and the unnamed 2.0
    assert dict(risk.exposure)[OTHER_SYMBOLS] == pytest.approx(2.2)
    assert len(risk.exposure) == 4


def fleet(version: int, *rows: tuple[int, float | None, datetime | None]) -> FleetSnapshot:
    accounts = {
        acc: AccountState(acc, values=AccountValues(balance=1000.0, equity=eq), live_data_at=at)
        for acc, eq, at in rows
    }
    return FleetSnapshot(version=version, accounts=accounts, failures={})


def test_equity_peaks_per_day_and_since_tracking_started() -> None:
    book = RiskBook()
    samples = [(0, 1000.0), (60, 1100.0), (120, 990.0)]  # 22:00 - 22:02 on day 1
    for v, (dt, eq) in enumerate(samples):
        book.observe_fleet(fleet(v, (ACC, eq, DAY1 + timedelta(seconds=dt))))
    d = book.drawdowns()[ACC]
    assert (d.equity, d.peak, d.day_peak) == (990.0, 1100.0, 1100.0)
    assert Drawdown.ratio(d.peak, d.equity) == pytest.approx(0.1)
    # the same sample again (a stored fallback keeps live_data_at) changes nothing
    book.observe_fleet(fleet(9, (ACC, 500.0, DAY1 + timedelta(seconds=120))))
    assert book.drawdowns()[ACC].equity == 990.0
    # the first sample dated in a new UTC day opens its peak
    day2 = DAY1 + timedelta(hours=3)
    book.observe_fleet(fleet(10, (ACC, 1050.0, day2)))
    book.observe_fleet(fleet(11, (ACC, 945.0, day2 + timedelta(minutes=1))))
    d = book.drawdowns()[ACC]
    assert (d.peak, d.day_peak) == (1100.0, 1050.0)
    assert Drawdown.ratio(d.day_peak, d.equity) == pytest.approx(0.1)
    assert Drawdown.ratio(d.peak, d.equity) == pytest.approx(155 / 1100)


def test_accounts_leaving_the_fleet_are_forgotten_and_bad_equity_is_no_sample() -> None:
    book = RiskBook()
    book.on_positions(snapshot(0, pos(1, "EURUSD"), account=ACC))
    book.observe_fleet(fleet(1, (ACC, 1000.0, DAY1), (2002, float("nan"), DAY1), (2003, None, DAY1)))
    assert set(book.drawdowns()) == {ACC}
    book.observe_fleet(fleet(2, (2002, 10.0, DAY1)))
    assert set(book.drawdowns()) == {2002} and dict(book.open_risk()) == {}
    assert Drawdown.ratio(0.0, -5.0) is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'risk.db'}")
    await s.open()
    yield s
    await s.close()


async def test_the_tap_feeds_the_book_with_what_the_store_kept(store: Store) -> None:
    book = RiskBook()
    tapped = tap(store, book)
    assert tapped.deals is store.deals and tapped.events is store.events  # everything else is the store's
    await tapped.positions.replace_positions(ACC, snapshot(0, pos(1, "EURUSD", pnl=-12.0)))
    assert book.open_risk()[ACC].largest_loss == 12.0
    kept = await store.positions.get_positions(ACC)
    assert kept is not None and kept.positions[0].profit == -12.0
    with pytest.raises(ValueError):  # a write the store refuses never reaches the book
        await tapped.positions.replace_positions(ACC, snapshot(1, pos(2, "EURUSD", pnl=-99.0), account=7))
    assert book.open_risk()[ACC].largest_loss == 12.0


def test_version_moves_only_with_what_the_metrics_show() -> None:
    """The risk text is cached on `version` (issue 17): it moves with a new summary or peak, not with an
    equal summary or an equity below the peaks."""
    book = RiskBook(clock=lambda: DAY1)
    v = book.version
    book.on_positions(snapshot(0, position(1, account=1001), account=1001))
    assert book.version > v
    v = book.version
    book.on_positions(snapshot(1, position(1, account=1001), account=1001))
    assert book.version == v  # an equal summary
    book.sample(1001, 100.0, DAY1)
    assert book.version > v
    v = book.version
    book.sample(1001, 90.0, DAY1 + timedelta(minutes=1))  # below both peaks
    assert book.version == v
    book.sample(1001, 110.0, DAY1 + timedelta(minutes=2))
    assert book.version > v
