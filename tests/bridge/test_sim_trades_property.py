"""Every trade life the desk can lay out keeps its books straight, whatever the seed, login and slot."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.sim_trades import MAX_TRADE_SECONDS, SLOT_MS, SimTrade, build_trade
from bridge.terminal import DEAL_ENTRY_IN, DEAL_ENTRY_INOUT, DEAL_ENTRY_OUT, DEAL_TYPE_BUY

SLOT0 = 1_761_321_199_000 // SLOT_MS


def _trade(seed: int, login: int, slot: int, balance: float, offset_h: int) -> SimTrade | None:
    return build_trade(seed, login, SLOT0 + slot, balance, offset_h * 3_600_000)[0]


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    login=st.integers(1, 10**9),
    slot=st.integers(0, 10_000),
    balance=st.floats(100.0, 1e6),
    offset_h=st.integers(-12, 14),
)
def test_a_trade_life_is_consistent(seed: int, login: int, slot: int, balance: float, offset_h: int) -> None:
    t = _trade(seed, login, slot, balance, offset_h)
    if t is None:
        return
    assert SLOT0 + slot == t.open_ms // SLOT_MS and 0 < t.close_ms - t.open_ms <= MAX_TRADE_SECONDS * 1000
    deals = [d.fields for d in t.deals]
    assert [d.utc_ms for d in t.deals] == sorted(d.utc_ms for d in t.deals)
    assert len({d["ticket"] for d in deals}) == len(deals)
    assert all(d["position_id"] == t.position for d in deals)
    assert deals[0]["entry"] == DEAL_ENTRY_IN and deals[-1]["entry"] == DEAL_ENTRY_OUT
    assert all(d.visible_ms == d.utc_ms for d in t.deals[:-1]) and t.deals[-1].visible_ms - t.close_ms <= 3000
    net = 0.0
    for d in deals:
        signed = d["volume"] if d["type"] == DEAL_TYPE_BUY else -d["volume"]
        if d["entry"] == DEAL_ENTRY_INOUT:
            assert abs(net) < d["volume"] and (net > 0) != (signed > 0)
        elif d["entry"] == DEAL_ENTRY_OUT:
            assert abs(signed) <= abs(net) + 1e-9 and (net > 0) != (signed > 0)
        net = round(net + signed, 2)
    assert net == 0.0

    # states follow the ground truth, and are what positions_get shows at each instant
    assert t.state_at(t.open_ms - 1) is None and t.state_at(t.close_ms) is None
    for ms, state in t.states:
        assert t.open_ms <= ms < t.close_ms and t.state_at(ms) == state and state.volume >= 0.01
        assert state.identifier == t.position and state.update_ms <= ms
    kinds = [c.kind for c in t.changes]
    assert kinds[0] == "opened" and kinds[-1] == "closed" and kinds.count("closed") == 1
    closed = t.changes[-1].data
    assert closed["realised"] == t.realised == round(sum(d.amount for d in t.deals), 2)
    assert closed["swap"] == t.swap_at(t.close_ms) == deals[-1]["swap"]
    assert closed["duration_ms"] == t.close_ms - t.open_ms and closed["deal"] == deals[-1]["ticket"]
    last = t.state_at(t.close_ms - 1)
    assert last is not None and closed["volume"] == last.volume
    for c in t.changes[1:-1]:
        before, after = t.state_at(c.time_ms - 1), t.state_at(c.time_ms)
        assert before is not None and after is not None and after.update_ms == c.time_ms
        if c.kind == "sl_tp":
            assert (before.sl, before.tp, after.sl, after.tp) == (
                c.data["old_sl"], c.data["old_tp"], c.data["sl"], c.data["tp"]
            )  # fmt: skip
        else:
            assert (before.volume, after.volume) == (c.data["old_volume"], c.data["volume"])
