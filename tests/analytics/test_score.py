"""The trade score's rules on hand-built trades: each rule's points, max, passed and reason; the score
1 + 9 * earned / judged; rules whose data is not kept are left out (passed None); the R-multiple beside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.analytics import Ledger
from agent.analytics.score import RULES, StopChange, facts_for_closed, facts_for_open, score, stop_histories
from agent.domain.trades import DealEntry, DealReason, EventType, Position, PositionType, TradeEvent
from tests.analytics.deals import ACCOUNT, Deals, at

IN, OUT = DealEntry.IN, DealEntry.OUT
PIP_VALUE = 100_000.0  # EURUSD, USD account: 1.0 of price per lot


def _event(
    pid: int, when: datetime, kind: EventType, sl: float | None, tp: float | None, n: int
) -> TradeEvent:
    data: dict[str, object] = {"sl": sl, "tp": tp}
    if kind is EventType.TRADE_UPDATED:
        data["change"] = "sl_tp"
    return TradeEvent(ACCOUNT, pid, kind, f"k{n}", when, when, "EURUSD", data, id=n)


def _rules(result) -> dict[str, tuple[int, int, bool | None]]:
    return {r.rule: (r.points, r.max_points, r.passed) for r in result.rules}


def test_the_table_totals_ten_points() -> None:
    assert sum(max_points for _, max_points, _ in RULES) == 10
    assert len({name for name, _, _ in RULES}) == len(RULES)


def test_a_disciplined_trade_scores_ten_with_r_multiple_beside() -> None:
    d = Deals()
    d.balance(at(1, 0), 10_000.0)
    # 0.2 lot, SL 50 pips (100 = 1 % of 10,000), TP 100 pips (reward:risk 2), closed at TP: +200
    d.trade(1, at(1, 9), "buy", IN, 0.2, price=1.1)
    d.trade(1, at(1, 11), "sell", OUT, 0.2, price=1.11, profit=200.0, reason=DealReason.TP)
    book = Ledger()
    book.add(d.deals)
    events = [
        _event(1, at(1, 9), EventType.TRADE_OPENED, 1.095, 1.11, 1),
        _event(1, at(1, 10), EventType.TRADE_UPDATED, 1.1, 1.11, 2),  # tightened to break-even: fine
    ]
    s = score(facts_for_closed(book.closed[0], book, stop_histories(events)[1]))
    assert _rules(s) == {
        "stop_loss_set": (2, 2, True), "risk_at_open": (2, 2, True), "reward_risk": (2, 2, True),
        "stop_never_widened": (1, 1, True), "margin_level_after_open": (0, 1, None),
        "no_revenge_entry": (1, 1, True), "not_stopped_out": (1, 1, True),
    }  # fmt: skip
    assert (s.score, s.points, s.max_points) == (10, 9, 9)
    assert s.risk_percent == pytest.approx(1.0) and s.r_multiple == pytest.approx(2.0)
    reasons = {r.rule: r.reason for r in s.rules}
    assert reasons["risk_at_open"] == "risk 1.00 % of balance (<= 1 %)"
    assert reasons["margin_level_after_open"] == "the margin level after its open is not recorded"


def test_revenge_entry_late_stop_widened_and_stopped_out_scores_one() -> None:
    d = Deals()
    d.balance(at(1, 0), 10_000.0)
    d.trade(1, at(1, 9), "buy", IN, 0.1, price=1.1)
    d.trade(1, at(1, 10), "sell", OUT, 0.1, price=1.09, profit=-100.0)
    d.trade(2, at(1, 10, 10), "buy", IN, 0.5, price=1.1)  # 10 min after the loss, 5x the volume
    d.trade(2, at(1, 10, 40), "sell", OUT, 0.5, price=1.08, profit=-1000.0, reason=DealReason.SO)
    book = Ledger()
    book.add(d.deals)
    events = [
        _event(2, at(1, 10, 10), EventType.TRADE_OPENED, 0.0, 0.0, 1),
        _event(2, at(1, 10, 15), EventType.TRADE_UPDATED, 1.09, 0.0, 2),  # 5 min late
        _event(2, at(1, 10, 20), EventType.TRADE_UPDATED, 1.08, 0.0, 3),  # widened away from price
    ]
    s = score(facts_for_closed(book.closed[1], book, stop_histories(events)[2]))
    assert _rules(s) == {
        "stop_loss_set": (0, 2, False), "risk_at_open": (0, 2, False), "reward_risk": (0, 2, False),
        "stop_never_widened": (0, 1, False), "margin_level_after_open": (0, 1, None),
        "no_revenge_entry": (0, 1, False), "not_stopped_out": (0, 1, False),
    }  # fmt: skip
    assert (s.score, s.points, s.max_points) == (1, 0, 9)
    assert s.r_multiple is None and s.undefined["r_multiple"] == "risk_not_known"
    reasons = {r.rule: r.reason for r in s.rules}
    assert reasons["no_revenge_entry"] == "larger entry (0.5 > 0.1 lots) soon after loss on 1"
    assert reasons["stop_never_widened"].startswith("stop moved away from price: 1.09 -> 1.08")


def test_middle_tiers_and_half_up_rounding() -> None:
    d = Deals()
    d.balance(at(1, 0), 10_000.0)
    # 0.3 lot, SL 50 pips: 150 = 1.5 % (1 point); TP 60 pips: reward:risk 1.2 (1 point); a sell
    d.trade(3, at(1, 9), "sell", IN, 0.3, price=1.1)
    d.trade(3, at(1, 12), "buy", OUT, 0.3, price=1.105, profit=-150.0, reason=DealReason.SL)
    book = Ledger()
    book.add(d.deals)
    stops = [StopChange(at(1, 9, 0) + timedelta(seconds=30), 1.105, 1.094)]
    s = score(facts_for_closed(book.closed[0], book, stops))
    assert _rules(s)["risk_at_open"] == (1, 2, True) and _rules(s)["reward_risk"] == (1, 2, True)
    assert (s.points, s.max_points, s.score) == (7, 9, 8)  # 1 + 9 * 7/9 = 8
    assert s.r_multiple == pytest.approx(-1.0)


def test_a_stop_never_seen_is_not_judged_and_the_maximum_says_so() -> None:
    d = Deals()
    d.balance(at(1, 0), 10_000.0)
    d.trade(4, at(1, 9), "buy", IN, 0.1, price=1.1)
    d.trade(4, at(1, 9, 0), "sell", OUT, 0.1, price=1.1, profit=0.0)
    book = Ledger()
    book.add(d.deals)
    # opened and closed between two polls: TRADE_OPENED came from the deal alone, sl/tp None
    events = [_event(4, at(1, 9), EventType.TRADE_OPENED, None, None, 1)]
    s = score(facts_for_closed(book.closed[0], book, stop_histories(events)[4]))
    assert [r.rule for r in s.rules if r.passed is None] == [
        "stop_loss_set", "risk_at_open", "reward_risk", "stop_never_widened", "margin_level_after_open",
    ]  # fmt: skip
    assert (s.points, s.max_points, s.score) == (2, 2, 10)


def test_live_score_of_an_open_position_uses_its_stops_and_the_margin_level_now() -> None:
    d = Deals()
    d.balance(at(1, 0), 10_000.0)
    d.trade(5, at(1, 9), "sell", IN, 1.0, price=1.2)
    book = Ledger()
    book.add(d.deals)
    position = Position(
        account=ACCOUNT, ticket=5, identifier=5, time=at(1, 9), time_update=at(1, 9), type=PositionType.SELL,
        magic=0, reason=0, volume=1.0, price_open=1.2, sl=1.21, tp=1.17, price_current=1.19, swap=0.0,
        profit=1000.0, symbol="EURUSD",
    )  # fmt: skip
    s = score(facts_for_open(position, book, [], margin_level=250.0))
    rules = _rules(s)
    # risk 0.01 x 1 lot x 100,000 = 1,000 = 10 % of balance; reward:risk 3
    assert rules["risk_at_open"] == (0, 2, False) and rules["reward_risk"] == (2, 2, True)
    assert rules["margin_level_after_open"] == (0, 1, False) and rules["not_stopped_out"] == (0, 1, None)
    assert (s.points, s.max_points) == (2 + 2 + 1 + 1, 9)
    assert s.r_multiple == pytest.approx(1.0)  # floating +1,000 over 1,000 at risk


def test_events_of_other_kinds_are_not_stop_history() -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    volume = TradeEvent(
        ACCOUNT, 9, EventType.TRADE_UPDATED, "v", when, when, "X", {"change": "volume_added"}, id=1
    )
    assert stop_histories([volume]) == {}
