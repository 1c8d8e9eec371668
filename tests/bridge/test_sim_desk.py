"""The simulator's trading desk against its own ground truth: every kind of change happens, what the terminal
serves (positions, deals, balance) replays from the ground truth at any instant, in any order."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from bridge.sim_trades import SLOT_MS, TruthChange
from bridge.simulated import DEMO_ACCOUNTS, SimulatedTerminal, demo_accounts
from bridge.terminal import (
    DEAL_ENTRY_IN,
    DEAL_ENTRY_INOUT,
    DEAL_ENTRY_OUT,
    DEAL_REASON_CLIENT,
    DEAL_REASON_EXPERT,
    DEAL_REASON_SL,
    DEAL_REASON_SO,
    DEAL_REASON_TP,
    DEAL_TYPE_BALANCE,
)

T0 = 1_761_321_199.0  # 2025-10-24T15:53:19Z, a Friday
TRADING = [login for login, _, balance in DEMO_ACCOUNTS if balance > 0]


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _terminal(clock: Clock, offset: float = 2.0, seed: int = 42) -> SimulatedTerminal:
    term = SimulatedTerminal(demo_accounts(), clock=clock, utc_offset_hours=offset, seed=seed)
    assert term.initialize()
    return term


def _at(term: SimulatedTerminal, clock: Clock, login: int, ms: int) -> tuple[Any, Any, Any]:
    clock.t = ms / 1000
    assert term.login(login, password=f"demo-{login}")
    return term.account_info(), term.positions_get() or (), term.history_deals_get(0, 2**40) or ()


@pytest.fixture(scope="module")
def truth() -> dict[int, list[TruthChange]]:
    term = _terminal(Clock())
    start = int(T0 * 1000) - 2 * 86_400_000
    return {login: term.ground_truth(login, start, int(T0 * 1000) + 86_400_000) for login in TRADING}


def test_every_kind_of_change_happens(truth) -> None:
    changes = [c for cs in truth.values() for c in cs]
    kinds = Counter(c.kind for c in changes)
    for kind in ("opened", "sl_tp", "volume_added", "partial_close", "reversal", "closed", "balance"):
        assert kinds[kind] >= 5, f"{kind}: {kinds}"
    closed = [c for c in changes if c.kind == "closed"]
    reasons = Counter(c.data["reason"] for c in closed)
    for reason in (DEAL_REASON_CLIENT, DEAL_REASON_EXPERT, DEAL_REASON_SL, DEAL_REASON_TP, DEAL_REASON_SO):
        assert reasons[reason] >= 3, reasons
    assert all(c.data["profit"] < 0 for c in closed if c.data["reason"] == DEAL_REASON_SO)
    assert sum(c.data["duration_ms"] < 1000 for c in closed) >= 5, "some open and close between two polls"
    assert sum(c.data["deal_visible_ms"] > c.time_ms for c in closed) >= 20, "some closing deals come late"
    assert all(c.data["deal_visible_ms"] - c.time_ms <= 3000 for c in closed)
    assert sum(c.data["swap"] != 0 for c in closed) >= 5, "positions held over a rollover pay swap"
    balance = [c for c in changes if c.kind == "balance"]
    assert any(c.data["amount"] > 0 for c in balance) and any(c.data["amount"] < 0 for c in balance)
    for c in closed:  # an SL/TP close fills at the level then in place
        if c.data["reason"] in (DEAL_REASON_SL, DEAL_REASON_TP):
            level = "sl" if c.data["reason"] == DEAL_REASON_SL else "tp"
            setters = [
                x
                for x in truth[c.login]
                if x.identifier == c.identifier and x.kind in ("opened", "sl_tp", "reversal")
            ]
            assert setters[-1].data[level] == c.data["price"]


def _replay(changes: list[TruthChange], now_ms: int) -> dict[int, dict[str, Any]]:
    """Open positions at now_ms rebuilt from the ground truth alone."""
    open_: dict[int, dict[str, Any]] = {}
    for c in changes:
        if c.time_ms > now_ms or c.kind == "balance":
            continue
        d = c.data
        if c.kind == "opened":
            open_[c.identifier] = dict(
                buy=d["buy"], volume=d["volume"], price_open=d["price"], sl=d["sl"], tp=d["tp"]
            )
        elif c.kind == "closed":
            del open_[c.identifier]
        else:
            p = open_[c.identifier]
            if c.kind == "sl_tp":
                assert (p["sl"], p["tp"]) == (d["old_sl"], d["old_tp"]) != (d["sl"], d["tp"])
                p.update(sl=d["sl"], tp=d["tp"])
            elif c.kind == "volume_added":
                assert p["volume"] == d["old_volume"] and d["volume"] == round(
                    d["old_volume"] + d["added"], 2
                )
                p.update(volume=d["volume"], price_open=d["price_open"])
            elif c.kind == "partial_close":
                assert p["volume"] == d["old_volume"] and 0 < d["volume"] < d["old_volume"]
                p.update(volume=d["volume"])
            elif c.kind == "reversal":
                assert (p["buy"], p["volume"]) == (d["old_buy"], d["old_volume"]) and d["buy"] != d["old_buy"]
                p.update(buy=d["buy"], volume=d["volume"], price_open=d["price"], sl=d["sl"], tp=d["tp"])
    return open_


def test_positions_deals_and_balance_replay_from_the_ground_truth(truth) -> None:
    clock = Clock()
    term = _terminal(clock)
    offset_ms = 2 * 3_600_000
    reopened: set[int] = set()
    for login in TRADING[:3]:
        changes = truth[login]
        moments = sorted({c.time_ms for c in changes} | {c.time_ms - 1 for c in changes})
        moments = [m for m in moments if m >= int(T0 * 1000) - 86_400_000][::7]
        assert len(moments) > 100
        for ms in reversed(moments):  # backwards: any instant can be read in any order
            info, positions, deals = _at(term, clock, login, ms)
            expected = _replay(changes, ms)
            got = {
                p.identifier: dict(
                    buy=p.type == 0, volume=p.volume, price_open=p.price_open, sl=p.sl, tp=p.tp
                )
                for p in positions
            }
            assert got == expected, ms
            for p in positions:
                assert p.time_update_msc >= p.time_msc
                if p.ticket != p.identifier:  # reopened at a rollover: a new ticket, the same identifier
                    reopened.add(p.identifier)
                    assert p.ticket > p.identifier and (p.ticket // 100) % 100 == login % 100
            assert info.balance == round(sum(d.profit + d.commission + d.swap + d.fee for d in deals), 2)
            assert info.equity == round(info.balance + info.profit, 2)
            assert all(d.time_msc - offset_ms <= ms for d in deals)
    assert reopened, "some positions change ticket at a rollover"


def test_deals_add_up_per_position(truth) -> None:
    clock = Clock()
    term = _terminal(clock)
    for login in TRADING:
        _, _, deals = _at(term, clock, login, int(T0 * 1000) + 86_400_000 + 10_000)
        tickets = [d.ticket for d in deals]
        assert len(set(tickets)) == len(tickets)
        assert tickets == sorted(tickets), "tickets grow with time, like a server's"
        by_position: dict[int, list[Any]] = defaultdict(list)
        for d in deals:
            if d.type == DEAL_TYPE_BALANCE:
                assert d.position_id == 0 and d.entry == 0 and d.commission == 0
            else:
                by_position[d.position_id].append(d)
        closed = {c.identifier: c for c in truth[login] if c.kind == "closed"}
        for position, ds in by_position.items():
            if position not in closed:
                continue
            c = closed[position]
            assert ds[0].entry == DEAL_ENTRY_IN and ds[-1].entry == DEAL_ENTRY_OUT
            assert ds[-1].reason == c.data["reason"] and ds[-1].price == c.data["price"]
            assert round(sum(d.profit + d.commission + d.swap + d.fee for d in ds), 2) == c.data["realised"]
            net = 0.0  # signed volume goes back to zero
            for d in ds:
                sign = 1 if d.type == 0 else -1
                if d.entry == DEAL_ENTRY_INOUT:
                    assert abs(net) < d.volume
                net = round(net + sign * d.volume, 2)
            assert net == 0.0
            assert all(d.commission < 0 for d in ds)


def test_closing_deal_may_show_after_the_position_is_gone(truth) -> None:
    clock = Clock()
    term = _terminal(clock)
    login = TRADING[0]
    late = [c for c in truth[login] if c.kind == "closed" and c.data["deal_visible_ms"] > c.time_ms]
    assert late
    for c in late[:5]:
        for ms, in_positions, in_history in (
            (c.time_ms - 1, True, False),
            (c.time_ms, False, False),
            (c.data["deal_visible_ms"] - 1, False, False),
            (c.data["deal_visible_ms"], False, True),
        ):
            _, positions, deals = _at(term, clock, login, ms)
            assert (c.identifier in {p.identifier for p in positions}) is in_positions
            assert (c.data["deal"] in {d.ticket for d in deals}) is in_history


def test_swap_is_charged_at_the_brokers_midnight() -> None:
    clock = Clock()
    for offset in (2.0, -5.0):
        term = _terminal(clock, offset=offset)
        trades = [t for login in TRADING for t in term.simulated_trades(login) if t.swaps]
        assert trades
        for t in trades:
            for ms, amount in t.swaps:
                assert (ms + offset * 3_600_000) % 86_400_000 == 0 and t.open_ms < ms < t.close_ms
                assert amount != 0


def test_ground_truth_does_not_depend_on_the_clock_or_the_reading_order() -> None:
    early, late = Clock(), Clock(T0 + 6 * 3600)
    one, two = _terminal(early), _terminal(late)
    login = TRADING[1]
    since, until = int(T0 * 1000), int(T0 * 1000) + 6 * 3_600_000
    assert two.ground_truth(login, since, until) == one.ground_truth(login, since, until)
    assert one.ground_truth(login, since, until)[0].time_ms >= since
    assert _terminal(early, seed=7).ground_truth(login, since, until) != one.ground_truth(login, since, until)
    # a trade's slot decides its identifier: the same trade is seen by both terminals
    slot_trades = [t for t in two.simulated_trades(login) if t.open_ms >= since]
    assert {t.position for t in slot_trades} <= {c.identifier for c in one.ground_truth(login, since, until)}
    assert all(t.open_ms // SLOT_MS * SLOT_MS <= t.open_ms for t in slot_trades)
