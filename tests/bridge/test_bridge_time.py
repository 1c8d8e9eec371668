"""Broker time in, true UTC out: deal and position times, and the requested window going the other way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.api import broker_ms_to_utc, iso_utc, parse_instant
from bridge.errors import BadRequest

A = 886557


def _iso_ms(ms: int) -> str:
    return iso_utc(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))


@pytest.mark.parametrize("offset", [2.0, -5.0, 5.5])
async def test_deals_are_reported_at_their_utc_instant(make_bridge, offset) -> None:
    br = await make_bridge(accounts=[A], static=True, utc_offset_hours=offset)
    term = br.sim(A)
    trades = [t for t in term.simulated_trades(A) if t.close_ms <= term.now_ms()]
    trade = trades[len(trades) // 2]

    # A window of +-1 s around the true open instant: found only if the bridge shifts it to broker time.
    lo, hi = _iso_ms(trade.open_ms - 1000), _iso_ms(trade.open_ms + 1000)
    status, body = await br.get(f"/api/mt5/account/{A}/trades?from={lo}&to={hi}".replace("+", "%2B"))
    assert status == 200
    opened = [d for d in body["deals"] if d["position_id"] == trade.position and d["entry"] == 0]
    assert len(opened) == 1
    assert opened[0]["time"] == _iso_ms(trade.open_ms)

    # The terminal itself reports broker time, so the conversion is doing real work.
    raw = term.history_deals_get(0, 2**40) or ()
    raw_open = next(d for d in raw if d.position_id == trade.position and d.entry == 0)
    assert raw_open.time_msc == trade.open_ms + round(offset * 3_600_000)

    status, body = await br.get(f"/api/mt5/account/{A}/trades?from=2000-01-01")
    closing = trade.deals[-1].fields["ticket"]
    closed = next(d for d in body["deals"] if d["ticket"] == closing)
    assert closed["position_id"] == trade.position and closed["entry"] == 1
    assert closed["time"] == _iso_ms(trade.close_ms)
    assert closed["profit"] == trade.profit


async def test_positions_are_reported_in_utc(make_bridge, busy_clock) -> None:
    clock = busy_clock(A, accounts=[A], static=True, utc_offset_hours=3)
    br = await make_bridge(accounts=[A], static=True, utc_offset_hours=3, clock=clock)
    term = br.sim(A)
    now = term.now_ms()
    open_trades = {t.position: t for t in term.simulated_trades(A) if t.close_ms > now}
    status, body = await br.get(f"/api/mt5/account/{A}/positions")
    assert status == 200 and body["positions"]
    for p in body["positions"]:
        assert p["time"] == _iso_ms(open_trades[p["identifier"]].open_ms)


async def test_default_window_covers_recent_deals_with_offset(make_bridge) -> None:
    """With +2 h broker time and no shift, the newest two hours of deals would be cut off."""
    br = await make_bridge(accounts=[A], static=True, utc_offset_hours=2)
    term = br.sim(A)
    newest = max(t.open_ms for t in term.simulated_trades(A))
    status, body = await br.get(f"/api/mt5/account/{A}/trades")
    assert status == 200
    assert max(d["time"] for d in body["deals"]) >= _iso_ms(newest)


def test_broker_ms_to_utc() -> None:
    utc = datetime(2025, 10, 24, 15, 53, 19, 571000, tzinfo=UTC)
    broker_ms = int((utc + timedelta(hours=2)).timestamp() * 1000)
    assert broker_ms_to_utc(broker_ms, 2.0) == utc
    assert iso_utc(utc) == "2025-10-24T15:53:19.571Z"


def test_parse_instant() -> None:
    assert parse_instant("from", "2025-10-24T15:53:19") == datetime(2025, 10, 24, 15, 53, 19, tzinfo=UTC)
    assert parse_instant("from", "2025-10-24T15:53:19Z") == datetime(2025, 10, 24, 15, 53, 19, tzinfo=UTC)
    assert parse_instant("from", "2025-10-24T17:53:19+02:00") == datetime(
        2025, 10, 24, 15, 53, 19, tzinfo=UTC
    )
    assert parse_instant("from", "2025-10-24T17:53:19 02:00") == datetime(
        2025, 10, 24, 15, 53, 19, tzinfo=UTC
    )
    assert parse_instant("to", "2025-10-24") == datetime(2025, 10, 24, tzinfo=UTC)
    for bad in ("", "now", "24/10/2025", "2025-10-24T25:00"):
        with pytest.raises(BadRequest):
            parse_instant("from", bad)


def test_instants_are_clamped_to_what_mt5_can_take() -> None:
    assert parse_instant("from", "1900-01-01") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_instant("from", "0001-01-01T00:00:00+14:00") == datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_instant("to", "9999-12-31T23:59:59-14:00") == datetime(3000, 1, 1, tzinfo=UTC)


@given(st.text(max_size=40))
def test_parse_instant_only_ever_raises_bad_request(text: str) -> None:
    try:
        dt = parse_instant("from", text)
    except BadRequest as e:
        assert e.status == 400 and e.code == "bad_request"
    else:
        assert dt.tzinfo is UTC and datetime(1970, 1, 1, tzinfo=UTC) <= dt <= datetime(3000, 1, 1, tzinfo=UTC)


@given(st.datetimes(timezones=st.timezones() | st.none()))
def test_parse_instant_round_trips_any_datetime(dt: datetime) -> None:
    expected = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    got = parse_instant("from", dt.isoformat())
    assert got == min(max(expected, datetime(1970, 1, 1, tzinfo=UTC)), datetime(3000, 1, 1, tzinfo=UTC))


def test_parse_instant_rfc3339_corners() -> None:
    assert parse_instant("from", "2025-10-24t15:53:19z") == datetime(2025, 10, 24, 15, 53, 19, tzinfo=UTC)
    assert parse_instant("from", "2025-10-24 15:53") == datetime(2025, 10, 24, 15, 53, tzinfo=UTC)
    leap = parse_instant("to", "2016-12-31T23:59:60Z")
    assert datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC) < leap < datetime(2017, 1, 1, tzinfo=UTC)
