"""The detector is total: for any positions, deals and snapshots of the right types (negative or NaN
volumes, naive or extreme times, foreign accounts, duplicated identifiers, balance operations), no
exception escapes, inconsistent items are set aside with a reason, and the state still serialises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionsSnapshot, PositionType
from agent.events import Detector, DetectorState
from tests.events.factory import ACC, at, deal, position, snapshot

zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23))),
)
times = st.one_of(
    st.datetimes(timezones=zones),
    st.builds(at, st.floats(min_value=0, max_value=60, allow_nan=False)),
)
small = st.integers(min_value=-2, max_value=6)
accounts = st.sampled_from((ACC, ACC, ACC, 7))
money = st.one_of(st.floats(), st.sampled_from((0.0, 1.5, -2.25)))
volumes = st.one_of(st.floats(), st.sampled_from((0.01, 0.1, 0.5, 1.0, 0.0, -1.0)))

positions = st.builds(
    Position,
    account=accounts,
    ticket=small,
    identifier=small,
    time=times,
    time_update=times,
    type=st.sampled_from(PositionType),
    magic=st.integers(),
    reason=st.integers(),
    volume=volumes,
    price_open=money,
    sl=money,
    tp=money,
    price_current=money,
    swap=money,
    profit=money,
    symbol=st.text(max_size=4),
)
deals = st.builds(
    Deal,
    account=accounts,
    ticket=small,
    order=small,
    time=times,
    type=st.sampled_from(DealType),
    entry=st.sampled_from(DealEntry),
    volume=volumes,
    price=money,
    commission=money,
    swap=money,
    profit=money,
    fee=money,
    symbol=st.text(max_size=4),
    position_id=small,
    reason=st.integers(),
)
snapshots = st.builds(
    PositionsSnapshot, account=accounts, as_of=times, positions=st.lists(positions, max_size=4).map(tuple)
)
rounds = st.lists(st.tuples(st.none() | snapshots, st.lists(deals, max_size=5)), max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds, st.booleans())
def test_no_input_of_the_right_types_raises(rs: list, restart: bool) -> None:
    det = Detector()
    stored: set[str] = set()
    for snap, ds in rs:
        events = det.observe(ACC, snapshot=snap, deals=ds, detected_at=at(100))
        keys = [e.dedup_key for e in events]
        assert len(keys) == len(set(keys)) and not set(keys) & stored
        stored |= set(keys)
        data = json.loads(json.dumps(det.state.to_dict()))
        if restart:
            det = Detector(DetectorState.from_dict(data))


def test_inconsistent_items_are_set_aside_with_a_reason() -> None:
    det = Detector()
    bad = [
        deal(8, 7, DealEntry.IN, buy=True, volume=-1.0, time=1),
        deal(9, 7, DealEntry.IN, buy=True, volume=float("nan"), time=1),
        deal(10, 0, DealEntry.IN, buy=True, volume=1.0, time=1),
        deal(11, 7, DealEntry.IN, buy=True, volume=1.0, time=1, account=ACC + 1),
    ]
    snap = snapshot(2, position(5, volume=-1.0), position(6), position(6))
    assert [e.dedup_key for e in det.observe(ACC, snapshot=snap, deals=bad, detected_at=at(3))] == [
        f"{ACC}:6:opened"
    ]
    assert len(det.rejected) == 6, det.rejected
    assert all(isinstance(r, str) and r for r in det.rejected)
    assert det.state.accounts[ACC].tracks.keys() == {6}


def test_naive_times_are_taken_as_utc() -> None:
    det = Detector()
    naive = deal(8, 7, DealEntry.IN, buy=True, volume=1.0, time=1, opens=True)
    naive = Deal(**{**{f: getattr(naive, f) for f in naive.__slots__}, "time": datetime(2026, 1, 5, 9, 0, 1)})
    ev = det.observe(ACC, snapshot=snapshot(2), deals=[naive], detected_at=at(3))
    assert ev[0].time == at(1)
