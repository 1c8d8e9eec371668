"""Every case of DESIGN.md 11's table, by hand: the events, their dedup keys and their data."""

from __future__ import annotations

import json
from decimal import Decimal

from agent.domain.trades import DealEntry, DealReason, DealType, EventType, TradeEvent
from agent.events import Detector, DetectorState
from tests.events.factory import ACC, at, deal, position, snapshot

IN, OUT, INOUT, OUT_BY = DealEntry.IN, DealEntry.OUT, DealEntry.INOUT, DealEntry.OUT_BY


def run(det: Detector, t: float, snap=None, deals=()) -> list[TradeEvent]:
    return det.observe(ACC, snapshot=snap, deals=list(deals), detected_at=at(t + 0.1))


def keys(events: list[TradeEvent]) -> list[str]:
    return [e.dedup_key for e in events]


def test_new_identifier_in_a_snapshot_is_opened_once() -> None:
    det = Detector()
    p = position(7, buy=False, volume=0.5, price_open=1.2, sl=1.25, tp=1.1, opened=3)
    ev = run(det, 5, snapshot(5, p))
    assert keys(ev) == [f"{ACC}:7:opened"]
    e = ev[0]
    assert (e.type, e.time, e.symbol, e.identifier, e.id) == (
        EventType.TRADE_OPENED,
        at(3),
        "EURUSD",
        7,
        None,
    )
    assert {k: e.data[k] for k in ("side", "volume", "price_open", "sl", "tp")} == {
        "side": "sell",
        "volume": 0.5,
        "price_open": 1.2,
        "sl": 1.25,
        "tp": 1.1,
    }
    assert run(det, 6, snapshot(6, p)) == []
    # its opening deal arriving later adds nothing
    assert run(det, 7, snapshot(7, p), [deal(8, 7, IN, buy=False, volume=0.5, time=3, opens=True)]) == []


def test_opened_from_its_in_deal_alone_then_the_snapshot_is_the_sl_tp_baseline() -> None:
    det = Detector()
    ev = run(det, 5, None, [deal(8, 7, IN, buy=True, volume=1.0, time=4, price=1.3, opens=True)])
    assert keys(ev) == [f"{ACC}:7:opened"]
    assert ev[0].data["sl"] is None and ev[0].data["price_open"] == 1.3 and ev[0].time == at(4)
    assert run(det, 6, snapshot(6, position(7, sl=1.2, tp=1.4, opened=4))) == []


def test_sl_tp_moves_and_a_recurring_value_gives_two_events() -> None:
    det = Detector()
    run(det, 1, snapshot(1, position(7, sl=1.1, opened=0)))
    e1 = run(det, 2, snapshot(2, position(7, sl=1.2, opened=0, updated=1.5)))
    e2 = run(det, 3, snapshot(3, position(7, sl=1.1, opened=0, updated=2.5)))
    e3 = run(det, 4, snapshot(4, position(7, sl=1.1, tp=1.5, opened=0, updated=3.5)))
    assert [e.data["change"] for e in e1 + e2 + e3] == ["sl_tp"] * 3
    assert e1[0].data["changes"] == {"sl": [1.1, 1.2]} and e1[0].time == at(1.5)
    assert e2[0].data["changes"] == {"sl": [1.2, 1.1]}
    assert e3[0].data["changes"] == {"tp": [0.0, 1.5]}
    assert len(set(keys(e1 + e2 + e3))) == 3
    # the same snapshot again (a retry, an overlapping poll): nothing
    assert run(det, 5, snapshot(5, position(7, sl=1.1, tp=1.5, opened=0, updated=3.5))) == []


def test_volume_added_partial_close_then_closed_with_exact_pnl() -> None:
    det = Detector()
    d_in = deal(8, 7, IN, buy=True, volume=0.1, time=1, commission=-0.35, opens=True)
    run(det, 1, snapshot(1, position(7, volume=0.1, opened=1)), [d_in])
    d_add = deal(9, 7, IN, buy=True, volume=0.2, time=2, commission=-0.7)
    ev = run(det, 2, snapshot(2, position(7, volume=0.3, opened=1, updated=2)), [d_add])
    assert keys(ev) == [f"{ACC}:deal:9"]
    assert ev[0].data["change"] == "volume_added" and ev[0].data["changes"] == {"volume": [0.1, 0.3]}
    d_part = deal(10, 7, OUT, buy=False, volume=0.1, time=3, profit=10.1, commission=-0.35, swap=-0.02)
    ev = run(det, 3, snapshot(3, position(7, volume=0.2, opened=1, updated=3)), [d_part])
    assert keys(ev) == [f"{ACC}:deal:10"]
    assert ev[0].data["change"] == "partial_close" and ev[0].data["changes"] == {"volume": [0.3, 0.2]}
    d_close = deal(11, 7, OUT, buy=False, volume=0.2, time=4, price=1.15, profit=20.2, fee=-0.01, reason=5)
    ev = run(det, 4, snapshot(4), [d_close])
    assert keys(ev) == [f"{ACC}:7:closed"]
    c = ev[0]
    expected = sum(Decimal(x) for x in ("-0.35", "-0.7", "10.1", "-0.35", "-0.02", "20.2", "-0.01"))
    assert Decimal(c.data["pnl_exact"]) == expected == Decimal("28.87")
    assert c.data["pnl"] == 28.87  # not 28.869999999999997 (float sums drift)
    assert (c.data["close_price"], c.data["close_reason"], c.data["duration_s"]) == (1.15, DealReason.TP, 3.0)
    assert c.time == at(4) and c.data["side"] == "buy" and c.data["pnl_complete"] is True
    # late duplicates of its deals, a stale-free empty snapshot: nothing more
    assert run(det, 5, snapshot(5), [d_in, d_add, d_part, d_close]) == []


def test_netting_reversal_then_close() -> None:
    det = Detector()
    run(
        det,
        1,
        snapshot(1, position(7, volume=1.0, opened=1)),
        [deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)],
    )
    rev = deal(9, 7, INOUT, buy=False, volume=1.5, time=2, profit=-4.0, commission=-1.0)
    ev = run(det, 2, snapshot(2, position(7, buy=False, volume=0.5, opened=1, updated=2)), [rev])
    assert keys(ev) == [f"{ACC}:deal:9"]
    assert ev[0].data["change"] == "reversal"
    assert ev[0].data["changes"] == {"side": ["buy", "sell"], "volume": [1.0, 0.5]}
    close = deal(10, 7, OUT, buy=True, volume=0.5, time=3, price=1.05, profit=2.5, reason=4)
    ev = run(det, 3, snapshot(3), [close])
    assert [e.type for e in ev] == [EventType.TRADE_CLOSED]
    assert ev[0].data["pnl"] == -2.5 and ev[0].data["side"] == "sell" and ev[0].data["close_reason"] == 4


def test_opened_and_closed_between_two_polls_from_the_sweep_alone() -> None:
    det = Detector()
    run(det, 1, snapshot(1))
    ev = run(
        det,
        5,
        snapshot(5),
        [
            deal(8, 7, IN, buy=False, volume=0.3, time=2, price=1.2, commission=-1.05, opens=True),
            deal(
                9, 7, OUT, buy=True, volume=0.3, time=3, price=1.19, profit=30.0, commission=-1.05, reason=6
            ),
        ],
    )
    assert [e.type for e in ev] == [EventType.TRADE_OPENED, EventType.TRADE_CLOSED]
    assert ev[1].data["pnl"] == 27.9 and ev[1].data["close_reason"] == DealReason.SO
    assert ev[1].data["duration_s"] == 1.0


def test_a_late_closing_deal_closes_a_sweep_later_with_the_right_pnl() -> None:
    det = Detector()
    run(
        det,
        1,
        snapshot(1, position(7, volume=1.0, opened=1)),
        [deal(8, 7, IN, buy=True, volume=1.0, time=1, commission=-3.5, opens=True)],
    )
    part = deal(9, 7, OUT, buy=False, volume=0.4, time=2, profit=4.0)
    final = deal(10, 7, OUT, buy=False, volume=0.6, time=3, profit=6.05)
    # gone, the partial close is seen but not the closing deal: the partial close may yet be the close
    assert run(det, 4, snapshot(4), [part]) == []
    ev = run(det, 5, snapshot(5), [final])
    assert [(e.type, e.data.get("change")) for e in ev] == [
        (EventType.TRADE_UPDATED, "partial_close"),
        (EventType.TRADE_CLOSED, None),
    ]
    assert ev[1].data["pnl"] == 6.55


def test_a_gone_position_without_covering_deals_is_not_closed() -> None:
    det = Detector()
    run(det, 1, snapshot(1, position(7, volume=1.0, opened=1)))
    assert run(det, 2, snapshot(2)) == []
    assert run(det, 3, snapshot(3), [deal(9, 7, OUT, buy=False, volume=0.5, time=2)]) == []
    ev = run(det, 4, snapshot(4), [deal(10, 7, OUT, buy=False, volume=0.5, time=2.5, profit=1.0)])
    assert [e.type for e in ev] == [EventType.TRADE_UPDATED, EventType.TRADE_CLOSED]
    assert ev[1].data["pnl_complete"] is False  # the opening deal was never seen: anchored on the snapshot


def test_a_deal_for_an_unknown_position_is_kept_and_matched_later() -> None:
    det = Detector()
    out = deal(9, 7, OUT, buy=False, volume=1.0, time=3, profit=5.0)
    assert run(det, 4, snapshot(4), [out]) == []
    assert 9 in det.state.accounts[ACC].tracks[7].deals
    ev = run(det, 5, snapshot(5), [deal(8, 7, IN, buy=True, volume=1.0, time=1, commission=-1.0, opens=True)])
    assert [e.type for e in ev] == [EventType.TRADE_OPENED, EventType.TRADE_CLOSED]
    assert ev[1].data["pnl"] == 4.0


def test_the_close_waits_while_a_snapshot_after_the_deal_still_shows_the_position() -> None:
    det = Detector()
    p = position(7, volume=1.0, opened=1)
    run(det, 1, snapshot(1, p), [deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)])
    close = deal(9, 7, OUT, buy=False, volume=1.0, time=2)
    assert run(det, 3, snapshot(3, p), [close]) == []
    assert [e.type for e in run(det, 4, snapshot(4))] == [EventType.TRADE_CLOSED]


def test_a_snapshot_older_than_the_last_one_is_set_aside() -> None:
    det = Detector()
    run(det, 5, snapshot(5, position(7, sl=1.0)))
    assert run(det, 6, snapshot(4, position(7, sl=2.0, updated=3))) == []
    assert det.rejected and "older" in det.rejected[0]


def test_out_by_closes_like_out() -> None:
    det = Detector()
    run(
        det, 1, snapshot(1, position(7, opened=1)), [deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)]
    )
    ev = run(det, 2, snapshot(2), [deal(9, 7, OUT_BY, buy=False, volume=1.0, time=2, price=1.2)])
    assert [e.type for e in ev] == [EventType.TRADE_CLOSED] and ev[0].data["close_price"] == 1.2


def test_balance_operations_are_never_trades() -> None:
    det = Detector()
    dep = deal(5, 0, IN, buy=True, volume=0.0, time=1, profit=1000.0, type_=DealType.BALANCE)
    fee = deal(6, 7, IN, buy=True, volume=1.0, time=1, profit=-2.0, type_=DealType.COMMISSION)
    assert run(det, 2, snapshot(2), [dep, fee]) == [] and det.rejected == []
    assert det.state.accounts[ACC].tracks == {}


def test_fallback_opening_deal_when_orders_do_not_name_the_identifier() -> None:
    det = Detector()
    d_in = deal(8, 7, IN, buy=True, volume=1.0, time=1, order=0)
    d_add = deal(9, 7, IN, buy=True, volume=1.0, time=2, order=0)
    ev = run(det, 3, snapshot(3, position(7, volume=2.0, opened=1, updated=2)), [d_in, d_add])
    assert [(e.type, e.dedup_key) for e in ev] == [
        (EventType.TRADE_OPENED, f"{ACC}:7:opened"),
        (EventType.TRADE_UPDATED, f"{ACC}:deal:9"),
    ]
    assert ev[0].data["volume"] == 1.0


def test_catch_up_after_a_restart_from_stored_facts() -> None:
    """Down while the position was modified, scaled in and another opened and closed: the next start
    yields exactly what was missed."""
    det = Detector()
    stored: list[TradeEvent] = []
    d_in = deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)
    stored += run(det, 1, snapshot(1, position(7, sl=1.0, opened=1)), [d_in])
    stored += run(det, 2, snapshot(2, position(7, sl=1.05, opened=1, updated=1.5)))
    assert len(stored) == 2
    state = DetectorState.from_facts(
        positions=[position(7, sl=1.05, opened=1, updated=1.5)],
        deals=[d_in],
        stored_keys=[e.dedup_key for e in stored],
    )
    det2 = Detector(state)
    missed = [
        deal(20, 9, IN, buy=False, volume=0.2, time=10, opens=True),
        deal(21, 9, OUT, buy=True, volume=0.2, time=11, profit=1.0),
        deal(22, 7, IN, buy=True, volume=0.5, time=12),
    ]
    ev = run(det2, 20, snapshot(20, position(7, volume=1.5, sl=1.1, opened=1, updated=12)), [*missed, d_in])
    assert sorted(keys(ev)) == sorted(
        [f"{ACC}:9:opened", f"{ACC}:9:closed", f"{ACC}:deal:22", f"{ACC}:7:sltp:{at(12).isoformat()}:1.1:0.0"]
    )
    assert not set(keys(ev)) & {e.dedup_key for e in stored}


def test_state_round_trips_through_json() -> None:
    det = Detector()
    run(
        det,
        1,
        snapshot(1, position(7, sl=1.0, opened=1)),
        [deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)],
    )
    run(det, 2, snapshot(2), [deal(30, 9, OUT, buy=True, volume=1.0, time=2)])  # gone, and an orphan
    data = json.loads(json.dumps(det.state.to_dict()))
    again = DetectorState.from_dict(data)
    assert again.to_dict() == det.state.to_dict()
    det2 = Detector(again)
    ev = run(det2, 3, snapshot(3), [deal(9, 7, OUT, buy=False, volume=1.0, time=2.5)])
    assert [e.dedup_key for e in ev] == [f"{ACC}:7:closed"]


def test_prune_forgets_old_closed_identifiers() -> None:
    det = Detector()
    run(
        det,
        1,
        None,
        [
            deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True),
            deal(9, 7, OUT, buy=False, volume=1.0, time=2),
        ],
    )
    assert det.state.accounts[ACC].closed == {7: at(2)}
    assert det.state.prune_closed(at(3)) == 1 and det.state.accounts[ACC].closed == {}


def test_a_close_seen_before_an_earlier_partial_close_is_not_taken_for_a_partial_close() -> None:
    """Out of order (history filled in late): the closing deal leaves volume only because an earlier OUT
    deal is missing; nothing is decided until it arrives."""
    det = Detector()
    run(
        det, 1, snapshot(1, position(7, opened=1)), [deal(8, 7, IN, buy=True, volume=1.0, time=1, opens=True)]
    )
    final = deal(10, 7, OUT, buy=False, volume=0.6, time=3, profit=6.0)
    assert run(det, 4, snapshot(4), [final]) == []
    ev = run(det, 5, snapshot(5), [deal(9, 7, OUT, buy=False, volume=0.4, time=2, profit=4.0)])
    assert [(e.dedup_key, e.data.get("change")) for e in ev] == [
        (f"{ACC}:deal:9", "partial_close"),
        (f"{ACC}:7:closed", None),
    ]


def test_a_trade_cut_by_the_first_sweeps_window_is_no_opening_from_its_scale_in() -> None:
    """A first sweep that starts after a trade opened sees its scale-in and its close, never its opening
    deal, and no snapshot ever showed it: the scale-in is not its opening (orders tell: it is not the
    opening order's), so nothing is invented; once the opening deal is swept, the whole trade follows."""
    det = Detector()
    scale_in = deal(20, 7, IN, buy=True, volume=0.13, time=10, price=1.3)
    close = deal(21, 7, OUT, buy=False, volume=0.47, time=20, price=1.31, profit=4.7)
    assert run(det, 30, snapshot(30), [scale_in, close]) == []
    opening = deal(19, 7, IN, buy=True, volume=0.34, time=5, price=1.29, opens=True)
    ev = run(det, 31, snapshot(31), [opening, scale_in, close])
    assert [e.type for e in ev] == [EventType.TRADE_OPENED, EventType.TRADE_UPDATED, EventType.TRADE_CLOSED]
    assert ev[0].data["volume"] == 0.34 and ev[1].data["change"] == "volume_added"
    assert Decimal(ev[2].data["pnl_exact"]) == Decimal("4.7")


def test_without_order_tickets_the_first_in_deal_near_the_open_time_is_the_opening() -> None:
    det = Detector()
    ev = run(det, 5, None, [deal(8, 7, IN, buy=True, volume=1.0, time=4, order=0)])
    assert [e.type for e in ev] == [EventType.TRADE_OPENED] and ev[0].data["volume"] == 1.0
