"""Scores on detected events, hand-computed: TRADE_OPENED carries the live score (the rules judged at the
open), TRADE_CLOSED the final score over every rule and the R-multiple beside it; what the detector knows
(positions, deals, the account's values at detection) is all it reads. The dedup key is unchanged."""

from __future__ import annotations

import dataclasses
import json

import pytest

from agent.analytics.score import AT_OPEN, RULES
from agent.api.trades import event_json
from agent.domain.accounts import AccountValues
from agent.domain.trades import DealEntry, DealReason, EventType, Position, TradeEvent
from agent.events import Detector, DetectorState
from tests.events.factory import ACC, at, deal, position, snapshot

IN, OUT = DealEntry.IN, DealEntry.OUT
VALUES = AccountValues(balance=10_000.0, equity=10_000.0, margin=220.0, margin_level=500.0)


def run(
    det: Detector, t: float, snap=None, deals=(), values: AccountValues | None = VALUES
) -> list[TradeEvent]:
    return det.observe(ACC, snapshot=snap, deals=list(deals), detected_at=at(t + 0.1), values=values)


def rules(e: TradeEvent) -> dict[str, tuple[int, int, bool | None]]:
    return {r["rule"]: (r["points"], r["max_points"], r["passed"]) for r in e.data["score"]["rules"]}


def moved(p: Position, price: float) -> Position:
    """The position with the market at `price` (its floating profit at 100,000 per 1.0 of price per lot)."""
    sign = 1 if int(p.type) == 0 else -1
    return dataclasses.replace(
        p, price_current=price, profit=round(sign * (price - p.price_open) * p.volume * 1e5, 2)
    )


def test_a_disciplined_trade_opens_and_closes_with_ten() -> None:
    det = Detector()
    # 0.2 lot at 1.1, SL 1.095 (risk 0.005 * 0.2 * 100,000 = 100 = 1 % of 10,000), TP 1.11 (reward:risk 2)
    p = moved(position(7, volume=0.2, price_open=1.1, sl=1.095, tp=1.11, opened=3), 1.1005)
    opened = run(
        det, 5, snapshot(5, p), [deal(70, 7, IN, buy=True, volume=0.2, time=3, price=1.1, opens=True)]
    )
    assert [(e.type, e.dedup_key) for e in opened] == [(EventType.TRADE_OPENED, f"{ACC}:7:opened")]
    e = opened[0]
    assert rules(e) == {
        "stop_loss_set": (2, 2, True), "risk_at_open": (2, 2, True), "reward_risk": (2, 2, True),
        "margin_level_after_open": (1, 1, True), "no_revenge_entry": (1, 1, True),
    }  # fmt: skip
    assert [r["rule"] for r in e.data["score"]["rules"]] == list(AT_OPEN)
    assert e.data["score"]["score"] == 10 and e.data["score"]["complete"] is False  # live: not every rule
    reasons = {r["rule"]: r["reason"] for r in e.data["score"]["rules"]}
    assert reasons["risk_at_open"] == "risk 1.00 % of balance (<= 1 %)"
    assert reasons["margin_level_after_open"] == "margin level 500 % (>= 300 %)"
    assert "r_multiple" not in e.data  # the outcome is the close's
    # the account's values have moved by the close: the score keeps those of the open
    later = AccountValues(balance=9_000.0, margin=900.0, margin_level=120.0)
    at_tp = deal(71, 7, OUT, buy=False, volume=0.2, time=59, price=1.11, profit=200.0, reason=5)
    closed = run(det, 60, snapshot(60), [at_tp], values=later)
    assert [(c.type, c.dedup_key) for c in closed] == [(EventType.TRADE_CLOSED, f"{ACC}:7:closed")]
    c = closed[0]
    assert rules(c) == {
        "stop_loss_set": (2, 2, True), "risk_at_open": (2, 2, True), "reward_risk": (2, 2, True),
        "stop_never_widened": (1, 1, True), "margin_level_after_open": (1, 1, True),
        "no_revenge_entry": (1, 1, True), "not_stopped_out": (1, 1, True),
    }  # fmt: skip
    assert [r["rule"] for r in c.data["score"]["rules"]] == [name for name, _, _ in RULES]
    assert c.data["score"] == {**c.data["score"], "score": 10, "complete": True}
    assert c.data["r_multiple"] == pytest.approx(2.0) and c.data["r_multiple_reason"] is None
    assert c.data["pnl"] == 200.0  # the rest of the payload as before
    json.dumps(c.data), json.dumps(e.data)  # stored and streamed as JSON


def test_a_larger_entry_after_a_loss_without_a_stop_widened_and_stopped_out_scores_one() -> None:
    det = Detector()
    run(
        det,
        1,
        snapshot(1, position(1, volume=0.1, sl=1.09, opened=0)),
        [deal(10, 1, IN, buy=True, volume=0.1, time=0, opens=True)],
    )
    # closed at a loss at 100 s
    run(
        det,
        101,
        snapshot(101),
        [deal(11, 1, OUT, buy=False, volume=0.1, time=100, price=1.09, profit=-100.0, reason=4)],
    )
    # 10 minutes later, 0.5 lot, no stop, no take-profit, margin level 150 %
    p = moved(position(2, volume=0.5, opened=700), 1.099)
    tight = AccountValues(balance=9_900.0, margin=6_600.0, margin_level=150.0)
    [e] = run(
        det,
        701,
        snapshot(701, p),
        [deal(20, 2, IN, buy=True, volume=0.5, time=700, opens=True)],
        values=tight,
    )
    assert rules(e) == {
        "stop_loss_set": (0, 2, False), "risk_at_open": (0, 2, False), "reward_risk": (0, 2, False),
        "margin_level_after_open": (0, 1, False), "no_revenge_entry": (0, 1, False),
    }  # fmt: skip
    assert e.data["score"]["score"] == 1
    reasons = {r["rule"]: r["reason"] for r in e.data["score"]["rules"]}
    assert reasons["no_revenge_entry"] == "larger entry (0.5 > 0.1 lots) soon after loss on 1"
    # a stop placed late (not at open), then widened; stopped out
    run(det, 800, snapshot(800, dataclasses.replace(p, sl=1.08, time_update=at(790))))
    run(det, 900, snapshot(900, dataclasses.replace(p, sl=1.07, time_update=at(890))))
    [c] = run(
        det,
        1000,
        snapshot(1000),
        [deal(21, 2, OUT, buy=False, volume=0.5, time=999, price=1.05, profit=-2500.0, reason=6)],
    )
    assert rules(c) == {
        "stop_loss_set": (0, 2, False), "risk_at_open": (0, 2, False), "reward_risk": (0, 2, False),
        "stop_never_widened": (0, 1, False), "margin_level_after_open": (0, 1, False),
        "no_revenge_entry": (0, 1, False), "not_stopped_out": (0, 1, False),
    }  # fmt: skip
    assert c.data["score"]["score"] == 1 and c.data["score"]["complete"] is True
    assert c.data["r_multiple"] is None and c.data["r_multiple_reason"] == "no_initial_stop_loss"


def test_what_the_detector_does_not_know_is_left_out_not_failed() -> None:
    """Opened and closed between two polls (no snapshot showed its stops), with no account values: only
    the revenge rule (and, at the close, the stop-out) can be judged; the maximum says so."""
    det = Detector()
    deals = [
        deal(30, 3, IN, buy=False, volume=1.0, time=10, price=1.2, opens=True),
        deal(
            31,
            3,
            OUT,
            buy=True,
            volume=1.0,
            time=20,
            price=1.19,
            profit=1000.0,
            reason=int(DealReason.CLIENT),
        ),
    ]
    opened, closed = run(det, 21, snapshot(21), deals, values=None)
    assert opened.type is EventType.TRADE_OPENED and closed.type is EventType.TRADE_CLOSED
    assert {k: v for k, v in rules(opened).items() if v[2] is not None} == {"no_revenge_entry": (1, 1, True)}
    assert opened.data["score"]["score"] == 10  # 1 + 9 * 1/1
    judged = {k: v for k, v in rules(closed).items() if v[2] is not None}
    assert judged == {"no_revenge_entry": (1, 1, True), "not_stopped_out": (1, 1, True)}
    assert closed.data["score"]["complete"] is False
    assert closed.data["r_multiple"] is None and closed.data["r_multiple_reason"] == "no_initial_stop_loss"


def test_a_margin_level_with_no_margin_in_use_is_a_sync_before_the_open_not_judged() -> None:
    det = Detector()
    before_open = AccountValues(balance=10_000.0, margin=0.0, margin_level=0.0)
    [e] = run(
        det,
        5,
        snapshot(5, moved(position(8, volume=0.1, sl=1.09, tp=1.12, opened=3), 1.1002)),
        values=before_open,
    )
    assert rules(e)["margin_level_after_open"] == (0, 1, None)
    assert rules(e)["risk_at_open"] == (2, 2, True)  # 0.01 * 0.1 * 100,000 = 100 = 1 %


@pytest.mark.parametrize("restart", ["to_dict", "from_facts"])
def test_the_final_score_after_a_restart(restart: str) -> None:
    """Serialised state keeps the context of the open (same final score); a state rebuilt from the store's
    facts does not know it (balance and margin level at the open: not judged), the stops it does."""
    det = Detector()
    p = moved(position(7, volume=0.2, price_open=1.1, sl=1.095, tp=1.11, opened=3), 1.1005)
    opening = deal(70, 7, IN, buy=True, volume=0.2, time=3, price=1.1, opens=True)
    [o] = run(det, 5, snapshot(5, p), [opening])
    if restart == "to_dict":
        det = Detector(DetectorState.from_dict(json.loads(json.dumps(det.state.to_dict()))))
    else:
        det = Detector(DetectorState.from_facts([p], [opening], [o.dedup_key], {ACC: at(5)}))
    [c] = run(
        det,
        60,
        snapshot(60),
        [deal(71, 7, OUT, buy=False, volume=0.2, time=59, price=1.09, profit=-200.0, reason=4)],
    )
    assert c.dedup_key == f"{ACC}:7:closed"
    assert c.data["r_multiple"] == pytest.approx(-2.0)
    got = rules(c)
    if restart == "to_dict":
        assert got["risk_at_open"] == (2, 2, True) and got["margin_level_after_open"] == (1, 1, True)
    else:
        assert got["risk_at_open"] == (0, 2, None) and got["margin_level_after_open"] == (0, 1, None)
    assert got["stop_loss_set"] == (2, 2, True) and got["reward_risk"] == (2, 2, True)


def test_a_loss_before_a_restart_still_counts_for_revenge() -> None:
    det = Detector()
    loss = [
        deal(10, 1, IN, buy=True, volume=0.1, time=0, opens=True),
        deal(11, 1, OUT, buy=False, volume=0.1, time=100, price=1.09, profit=-100.0),
    ]
    stored = [e.dedup_key for e in run(det, 101, snapshot(101), loss)]
    det = Detector(DetectorState.from_facts([], loss, stored, {ACC: at(101)}))
    [e] = run(det, 201, snapshot(201, position(2, volume=0.3, opened=200)))
    assert rules(e)["no_revenge_entry"] == (0, 1, False)


def test_events_stored_without_a_score_still_serialise() -> None:
    old = TradeEvent(
        ACC, 7, EventType.TRADE_CLOSED, f"{ACC}:7:closed", at(1), at(2), "EURUSD", {"pnl": 1.0}, id=3
    )
    body = event_json(old)
    assert body["data"] == {"pnl": 1.0} and json.loads(json.dumps(body)) == body
