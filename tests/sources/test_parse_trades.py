"""The positions and deals parser: good answers become domain values, and every bad field fails the
whole answer with invalid_payload (or account_mismatch) and a message naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.domain.accounts import Reason
from agent.domain.trades import DealEntry, DealType, PositionType
from agent.sources.bridge.parse import ClockSkewError, PayloadError
from agent.sources.bridge.parse_trades import (
    MAX_DEALS,
    MAX_POSITIONS,
    parse_deals,
    parse_positions,
)
from tests.sources.payloads import (
    ACCOUNT,
    RECEIVED,
    deal_json,
    deals_answer,
    position_json,
    positions_answer,
)


def test_good_positions_become_domain_values() -> None:
    snap = parse_positions(
        ACCOUNT,
        positions_answer(position_json(1001), position_json(1002, type=1, identifier="1002", magic=0)),
        RECEIVED,
    )
    assert snap.account == ACCOUNT and snap.as_of == RECEIVED
    a, b = snap.positions
    assert a.ticket == a.identifier == 1001 and a.type is PositionType.BUY and a.account == ACCOUNT
    assert a.time == datetime(2026, 1, 5, 9, 30, 0, 125000, tzinfo=UTC)
    assert a.time_update == datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    assert (a.volume, a.price_open, a.sl, a.tp, a.swap, a.profit) == (0.5, 1.0845, 1.08, 0.0, -0.35, 80.0)
    assert (a.symbol, a.comment, a.magic, a.reason) == ("EURUSD", "grid #3", 42, 3)
    assert b.identifier == 1002 and b.type is PositionType.SELL and b.magic == 0


def test_as_of_is_never_after_the_receipt_and_empty_list_is_fine() -> None:
    ahead = (RECEIVED + timedelta(seconds=2)).isoformat()
    snap = parse_positions(ACCOUNT, positions_answer(timestamp=ahead), RECEIVED)
    assert snap.as_of == RECEIVED and snap.positions == ()
    earlier = parse_positions(ACCOUNT, positions_answer(timestamp="2026-01-05T11:59:58+00:00"), RECEIVED)
    assert earlier.as_of == RECEIVED - timedelta(seconds=2)


def test_good_deals_become_domain_values() -> None:
    deals = parse_deals(
        ACCOUNT,
        deals_answer(
            deal_json(5001),
            deal_json(5002, type=1, entry=1, profit=12.5, swap=-1.0, fee=-0.1, reason=4),
            # A balance operation: no position, no symbol, no volume.
            deal_json(5003, type=2, entry=0, position_id=0, symbol="", volume=0, order=0, profit=500),
        ),
        RECEIVED,
    )
    a, b, c = deals
    assert a.type is DealType.BUY and a.entry is DealEntry.IN and a.position_id == 1001 and a.is_trade
    assert b.entry is DealEntry.OUT and b.result == pytest.approx(12.5 - 3.5 - 1.0 - 0.1)
    assert c.type is DealType.BALANCE and not c.is_trade and c.symbol == "" and c.volume == 0.0


def test_exact_repeats_are_dropped_conflicts_are_refused() -> None:
    snap = parse_positions(ACCOUNT, positions_answer(position_json(7), position_json(7)), RECEIVED)
    assert len(snap.positions) == 1
    assert len(parse_deals(ACCOUNT, deals_answer(deal_json(9), deal_json(9)), RECEIVED)) == 1
    with pytest.raises(PayloadError, match="identifier 7 appears twice"):
        parse_positions(ACCOUNT, positions_answer(position_json(7), position_json(8, identifier=7)), RECEIVED)
    with pytest.raises(PayloadError, match="ticket 9 appears twice"):
        parse_deals(ACCOUNT, deals_answer(deal_json(9), deal_json(9, volume=1.0)), RECEIVED)


FUTURE = (RECEIVED + timedelta(seconds=60)).isoformat()
BAD_FIELDS: list[tuple[str, Any, str]] = [
    ("ticket", 0, "ticket 0 is not a positive"),
    ("ticket", -5, "is not a positive"),
    ("ticket", True, "ticket True is not"),
    ("ticket", 1.5, "ticket 1.5 is not"),
    ("ticket", 2**63, "is not a positive 64-bit"),
    ("ticket", "12a", "is not a positive"),
    ("ticket", "١٢٣", "is not a positive"),
    ("ticket", None, "ticket None is not"),
    ("magic", -1, "magic -1 is not a non-negative"),
    ("magic", [1], "magic an array"),
    ("type", 2, "type 2 is not one of 0, 1"),
    ("type", "0", "is not one of"),
    ("type", False, "is not one of"),
    ("reason", 10_000, "reason 10000 is not an integer in 0..255"),
    ("reason", -1, "reason -1"),
    ("volume", -0.01, "volume -0.01 is not a volume"),
    ("volume", 1e300, "volume 1e+300 is beyond"),
    ("volume", "1", "volume is a string, not a number"),
    ("volume", None, "volume is null, not a number"),
    ("price_open", 1e16, "price_open 1e+16 is beyond"),
    ("profit", 10**30, "profit is a 100-bit integer"),
    ("swap", {"x": 1}, "swap is an object"),
    ("sl", True, "sl is a boolean"),
    ("time", 1767600000, "time is int, not an ISO-8601"),
    ("time", "2026-01-05T09:30:00", "has no UTC offset"),
    ("time", "yesterday", "is not an ISO-8601 time"),
    ("time", "1999-12-31T23:59:59Z", "is before 2000-01-01"),
    ("time", "0001-01-01T00:00:00+01:00", "time"),
    ("time_update", FUTURE, "time_update '2026-01-05T12:01:00+00:00' is ahead of the receive time"),
    ("time", "x" * 100, "is not an ISO-8601"),
    ("symbol", "", "symbol is empty"),
    ("symbol", "EUR\x00USD", "non-printable"),
    ("symbol", "S" * 65, "longer than 64"),
    ("symbol", 5, "symbol is int, not a string"),
    ("comment", "\ud800", "non-printable"),
    ("comment", "c" * 257, "longer than 256"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_FIELDS)
def test_a_bad_position_field_fails_the_answer_naming_it(field: str, value: Any, message: str) -> None:
    bad = position_json(2)
    bad[field] = value
    doc = positions_answer(position_json(1), bad)
    with pytest.raises(PayloadError) as err:
        parse_positions(ACCOUNT, doc, RECEIVED)
    assert err.value.reason is Reason.INVALID_PAYLOAD
    assert f"positions[1].{field}" in err.value.message and message in err.value.message


DEAL_BAD_FIELDS: list[tuple[str, Any, str]] = [
    ("ticket", 0, "is not a positive"),
    ("order", -1, "order -1 is not a non-negative"),
    ("type", 18, "type 18 is not one of 0, 1, 2"),
    ("entry", 4, "entry 4 is not one of 0, 1, 2, 3"),
    ("position_id", 0, "position_id 0 is not a positive"),  # a buy or sell belongs to a position
    ("symbol", "", "symbol is empty"),  # and to a symbol
    ("commission", float("nan"), "commission is not finite"),
    ("fee", float("-inf"), "fee is not finite"),
    ("price", "1.1", "price is a string"),
    ("time", FUTURE, "is ahead of the receive time"),
    ("reason", 2.5, "reason 2.5"),
    ("comment", None, "comment is null, not a string"),
]


@pytest.mark.parametrize(("field", "value", "message"), DEAL_BAD_FIELDS)
def test_a_bad_deal_field_fails_the_answer_naming_it(field: str, value: Any, message: str) -> None:
    bad = deal_json(2)
    bad[field] = value
    doc = deals_answer(deal_json(1), bad)
    with pytest.raises(PayloadError) as err:
        parse_deals(ACCOUNT, doc, RECEIVED)
    assert err.value.reason is Reason.INVALID_PAYLOAD
    assert f"deals[1].{field}" in err.value.message and message in err.value.message


@pytest.mark.parametrize("field", ["ticket", "identifier", "time", "volume", "symbol", "comment", "sl"])
def test_a_missing_position_field_is_named(field: str) -> None:
    entry = position_json(3)
    del entry[field]
    with pytest.raises(PayloadError, match=rf"positions\[0\]\.{field} is missing"):
        parse_positions(ACCOUNT, positions_answer(entry), RECEIVED)


@pytest.mark.parametrize("field", ["ticket", "order", "entry", "fee", "position_id", "magic", "reason"])
def test_a_missing_deal_field_is_named(field: str) -> None:
    entry = deal_json(3)
    del entry[field]
    with pytest.raises(PayloadError, match=rf"deals\[0\]\.{field} is missing"):
        parse_deals(ACCOUNT, deals_answer(entry), RECEIVED)


def test_identities_accept_integral_floats_and_digit_strings() -> None:
    snap = parse_positions(
        ACCOUNT, positions_answer(position_json("77", identifier=78.0, type=1.0)), RECEIVED
    )
    p = snap.positions[0]
    assert (p.ticket, p.identifier, p.type) == (77, 78, PositionType.SELL)


@pytest.mark.parametrize(
    ("doc", "reason", "message"),
    [
        ([], Reason.INVALID_PAYLOAD, "not a JSON object"),
        (None, Reason.INVALID_PAYLOAD, "not a JSON object"),
        ({"positions": []}, Reason.INVALID_PAYLOAD, "account_id is missing"),
        (positions_answer(account=886066), Reason.ACCOUNT_MISMATCH, "account 886066 when asked"),
        (positions_answer(account="88655x"), Reason.INVALID_PAYLOAD, "account_id '88655x'"),
        (positions_answer(account=True), Reason.INVALID_PAYLOAD, "account_id True"),
        ({"account_id": ACCOUNT, "positions": []}, Reason.INVALID_PAYLOAD, "timestamp is missing"),
        (positions_answer(timestamp="2026-01-05T12:00:00"), Reason.INVALID_PAYLOAD, "no UTC offset"),
        (positions_answer(positions={}), Reason.INVALID_PAYLOAD, "positions is an object, not an array"),
        (
            {"account_id": ACCOUNT, "timestamp": "2026-01-05T12:00:00Z"},
            Reason.INVALID_PAYLOAD,
            "positions is missing",
        ),
        (positions_answer(3), Reason.INVALID_PAYLOAD, "positions[0] is int, not an object"),
        ({"error": {"code": "login_failed", "message": "no"}}, Reason.LOGIN_FAILED, "login_failed: no"),
        ({"error": {"code": "terminal_unavailable"}}, Reason.NO_LIVE_DATA, "terminal_unavailable"),
        ({"error": "x" * 10_000}, Reason.INVALID_PAYLOAD, "bridge reported an error"),
    ],
)
def test_bad_positions_answers(doc: Any, reason: Reason, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_positions(ACCOUNT, doc, RECEIVED)
    assert err.value.reason is reason and message in err.value.message
    assert len(err.value.message) < 400


def test_a_snapshot_from_the_future_is_clock_skew() -> None:
    doc = positions_answer(timestamp=(RECEIVED + timedelta(hours=2)).isoformat())
    with pytest.raises(ClockSkewError) as err:
        parse_positions(ACCOUNT, doc, RECEIVED)
    assert err.value.ahead_seconds == pytest.approx(7200)
    # A wider tolerance takes it.
    assert parse_positions(ACCOUNT, doc, RECEIVED, tolerance=7201).as_of == RECEIVED


@pytest.mark.parametrize(
    ("doc", "reason", "message"),
    [
        (deals_answer(account=1), Reason.ACCOUNT_MISMATCH, "account 1 when asked"),
        (deals_answer(deals=None), Reason.INVALID_PAYLOAD, "deals is null, not an array"),
        (deals_answer(**{"from": "2026-02-01T00:00:00Z"}), Reason.INVALID_PAYLOAD, "from is after to"),
        (deals_answer(to="later"), Reason.INVALID_PAYLOAD, "to 'later' is not an ISO-8601"),
        ({"error": {"code": "unknown_account"}}, Reason.NOT_FOUND, "unknown_account"),
    ],
)
def test_bad_deals_answers(doc: Any, reason: Reason, message: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_deals(ACCOUNT, doc, RECEIVED)
    assert err.value.reason is reason and message in err.value.message


def test_list_sizes_are_bounded() -> None:
    with pytest.raises(PayloadError, match=f"more than {MAX_POSITIONS}"):
        parse_positions(ACCOUNT, positions_answer(positions=[None] * (MAX_POSITIONS + 1)), RECEIVED)
    with pytest.raises(PayloadError, match=f"more than {MAX_DEALS}"):
        parse_deals(ACCOUNT, deals_answer(deals=[None] * (MAX_DEALS + 1)), RECEIVED)
    # At the bound it is parsed (and each entry checked).
    many = [position_json(i + 1) for i in range(MAX_POSITIONS)]
    assert len(parse_positions(ACCOUNT, positions_answer(*many), RECEIVED).positions) == MAX_POSITIONS
