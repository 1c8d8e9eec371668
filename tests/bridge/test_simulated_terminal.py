"""The simulator on its own: realistic money arithmetic, determinism, static mode, faults and release."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.simulated import (
    DEMO_ACCOUNTS,
    SYMBOLS,
    SimulatedTerminal,
    demo_accounts,
    price_at,
    simulated_pool,
)
from bridge.terminal import RES_E_AUTH_FAILED

A = 886557
T0 = 1_761_321_199.0  # 2025-10-24T15:53:19Z


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _terminal(clock: Clock | None = None, **kw) -> SimulatedTerminal:
    term = SimulatedTerminal(demo_accounts(), clock=clock or Clock(), **kw)
    assert term.initialize()
    return term


def _login(term: SimulatedTerminal, login: int) -> None:
    assert term.login(login, password=f"demo-{login}", server="MEXAtlantic-Real")


def _deal_total(term: SimulatedTerminal) -> float:
    deals = term.history_deals_get(0, 2**40) or ()
    return round(sum(d.profit + d.commission + d.swap + d.fee for d in deals), 2)


def test_demo_accounts_start_at_the_seed_balances() -> None:
    term = _terminal()
    for login, name, balance in DEMO_ACCOUNTS:
        _login(term, login)
        info = term.account_info()
        assert info is not None
        assert (info.login, info.name, info.balance) == (login, name, balance)
        assert (info.server, info.currency, info.leverage) == ("MEXAtlantic-Real", "USD", 100)


def test_balance_changes_exactly_by_closed_trades() -> None:
    clock = Clock()
    term = _terminal(clock)
    _login(term, A)
    start = term.account_info()
    assert start is not None and start.balance == 80_000.00
    opened = {p.identifier for p in term.positions_get() or ()}
    assert opened, "the demo account should hold positions at start"
    trade = min((t for t in term.simulated_trades(A) if t.position in opened), key=lambda t: t.close_ms)
    closing = trade.deals[-1]
    assert closing.utc_ms == trade.close_ms and closing.fields["entry"] == 1

    clock.t = trade.close_ms / 1000 - 0.001  # just before the close
    assert trade.position in {p.identifier for p in term.positions_get() or ()}
    clock.t = trade.close_ms / 1000
    assert trade.position not in {p.identifier for p in term.positions_get() or ()}
    clock.t = closing.visible_ms / 1000 - 0.001  # the closing deal may show up to 3 s late
    before = term.account_info()
    clock.t = closing.visible_ms / 1000
    after = term.account_info()
    assert before is not None and after is not None
    f = closing.fields
    expected = round(f["profit"] + f["commission"] + f.get("swap", 0.0), 2)
    assert round(after.balance - before.balance, 2) == expected != 0
    assert after.balance == _deal_total(term), "the deal history must add up to the balance"


def test_margin_math_is_consistent_over_time() -> None:
    clock = Clock()
    term = _terminal(clock)
    checked = 0
    for step in range(24):
        clock.t = T0 + step * 450
        for login, *_ in DEMO_ACCOUNTS:
            _login(term, login)
            info = term.account_info()
            positions = term.positions_get() or ()
            assert info is not None
            assert info.balance == _deal_total(term)
            assert info.profit == round(sum(p.profit + p.swap for p in positions), 2)
            assert info.equity == round(info.balance + info.profit, 2)
            margin = 0.0
            for p in positions:
                sym = next(s for s in SYMBOLS if s.name == p.symbol)
                margin += p.volume * sym.contract_size * (1 if sym.usd_base else p.price_open) / info.leverage
            assert info.margin == round(margin, 2)
            assert info.margin_free == round(info.equity - info.margin, 2)
            if info.margin:
                assert info.margin_level == pytest.approx(info.equity / info.margin * 100, abs=0.01)
                checked += 1
            else:
                assert info.margin_level == 0.0
    assert checked > 50


def test_empty_account_does_not_trade() -> None:
    term = _terminal()
    _login(term, 886528)
    info = term.account_info()
    assert info is not None and info.balance == info.equity == info.margin == info.margin_level == 0.0
    assert term.positions_get() == () and term.history_deals_get(0, 2**40) == ()


def test_values_move_with_time_unless_static() -> None:
    clock = Clock()
    live, frozen = _terminal(clock), _terminal(clock, static=True)
    for term in (live, frozen):
        _login(term, A)
    first_live, first_frozen = live.account_info(), frozen.account_info()
    assert first_live == first_frozen
    clock.t += 3600
    assert live.account_info() != first_live, "prices and trades move over an hour"
    assert frozen.account_info() == first_frozen
    assert frozen.positions_get() == frozen.positions_get()
    assert frozen.history_deals_get(0, 2**40) == frozen.history_deals_get(0, 2**40)


def test_same_seed_same_data_and_another_seed_differs() -> None:
    clock = Clock()
    one, two, other = _terminal(clock), _terminal(clock), _terminal(clock, seed=7)
    for step in range(3):
        clock.t = T0 + step * 900
        for term in (one, two, other):
            _login(term, A)
        assert one.account_info() == two.account_info()
        assert one.positions_get() == two.positions_get()
        assert one.history_deals_get(0, 2**40) == two.history_deals_get(0, 2**40)
    assert one.history_deals_get(0, 2**40) != other.history_deals_get(0, 2**40)


def test_prices_wander_but_stay_plausible() -> None:
    for i, sym in enumerate(SYMBOLS):
        prices = [price_at(42, i, T0 + k * 60) for k in range(24 * 60)]
        assert len(set(prices)) > 200, "a day of minutes should not be flat"
        assert max(prices) - min(prices) > 0.001 * sym.base_price
        assert all(0.9 * sym.base_price < p < 1.1 * sym.base_price for p in prices)


def test_login_checks_password_and_costs_time() -> None:
    term = _terminal(login_cost=0.05)
    t0 = time.monotonic()
    assert not term.login(A, password="wrong")
    assert time.monotonic() - t0 >= 0.05
    assert term.last_error()[0] == RES_E_AUTH_FAILED
    assert term.account_info() is None
    _login(term, A)
    assert term.login_calls == 2


def _blocked_call(term: SimulatedTerminal) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(term.account_info()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while term.hung_calls != 1:
        assert time.monotonic() < deadline, "call did not hang"
        time.sleep(0.001)
    return thread, out


def test_hang_is_released_by_clearing_the_fault() -> None:
    term = _terminal()
    _login(term, A)
    term.set_fault(A, "hang")
    thread, out = _blocked_call(term)
    assert thread.is_alive()
    term.set_fault(A, None)
    thread.join(2)
    assert not thread.is_alive() and out[0] is not None and out[0].login == A


def test_hang_is_released_by_release() -> None:
    term = _terminal(hang_seconds=60)
    _login(term, A)
    term.set_fault(A, "hang")
    thread, out = _blocked_call(term)
    term.release()
    thread.join(2)
    assert not thread.is_alive() and out == [None]


def test_fault_validation() -> None:
    term = _terminal()
    with pytest.raises(ValueError, match="unknown fault"):
        term.set_fault(A, "bogus")
    with pytest.raises(ValueError, match="not on simulated terminal"):
        term.set_fault(1, "hang")
    with pytest.raises(ValueError, match="unknown account"):
        simulated_pool([A], faults={1: "hang"})


def test_simulated_pool_layouts() -> None:
    assert len(simulated_pool().handles) == 7
    spread = simulated_pool(terminals=3)
    assert [len(h.accounts) for h in spread.handles] == [3, 2, 2]
    grouped = simulated_pool(
        [
            {"login": 1, "password": "p", "server": "S", "terminal": "x"},
            {"login": 2, "password": "p", "server": "S", "terminal": "x"},
            {"login": 3, "password": "p", "server": "S"},
        ]
    )
    assert [(h.name, sorted(h.accounts)) for h in grouped.handles] == [("x", [1, 2]), ("sim-3", [3])]
    with pytest.raises(ValueError, match="duplicate"):
        simulated_pool([A, A])
