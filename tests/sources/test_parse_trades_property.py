"""The property: whatever JSON a bridge sends for positions or deals, the parser returns domain values
inside their bounded domains, or a PayloadError with a reason from the closed set. Never another
exception, never a value outside the domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.domain.accounts import REASONS
from agent.domain.trades import Deal, Position
from agent.sources.bridge.parse import CLOCK_SKEW_TOLERANCE, PayloadError
from agent.sources.bridge.parse_trades import (
    DEAL_FIELDS,
    POSITION_FIELDS,
    parse_deals,
    parse_positions,
)
from tests.sources.checks import check_deal, check_position
from tests.sources.payloads import ACCOUNT, RECEIVED, deal_json, deals_answer, position_json, positions_answer

LATEST = RECEIVED + timedelta(seconds=CLOCK_SKEW_TOLERANCE)

edges = st.sampled_from(
    [
        0,
        -1,
        1,
        2,
        3,
        17,
        18,
        2**53,
        2**53 + 1,
        2**63 - 1,
        2**63,
        10**400,
        0.5,
        1.0,
        1.5,
        1001.25,
        "1001",
        "01001",
        -0.0,
        float("nan"),
        float("inf"),
        1e15,
        1e16,
        1e300,
        True,
        False,
        None,
        "",
        "7",
        "١٢٣",
        "²",
        "9" * 30,
        "\x00",
        "\ud800",
        "x" * 300,
        "EURUSD",
        "2026-01-05T09:00:00Z",
        "2026-01-05T09:00:00",
        "1999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "2026-01-05T12:00:05.000001Z",
        "2026-01-05T12:00:04.999999Z",
    ]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | edges
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def _same(sent: Any, got: Any) -> bool:
    """The parsed value is what was sent, only re-typed (never rounded, truncated or shifted)."""
    if isinstance(got, datetime):
        return got == datetime.fromisoformat(sent.replace("Z", "+00:00"))
    if type(sent) is str and type(got) is int:
        return int(sent) == got
    if type(got) is int or type(got) is float:  # IntEnum included
        return type(sent) in (int, float) and sent == got
    return sent == got


def _check_sent(entry: Any, parsed: Position | Deal) -> None:
    for name, sent in entry.items():
        if hasattr(parsed, name):
            assert _same(sent, getattr(parsed, name)), (name, sent, getattr(parsed, name))


def _positions(doc: Any) -> None:
    try:
        snap = parse_positions(ACCOUNT, doc, RECEIVED)
    except PayloadError as exc:
        assert exc.reason in REASONS and exc.message and len(exc.message) < 500
        return
    assert snap.account == ACCOUNT and snap.as_of <= RECEIVED
    assert len({p.identifier for p in snap.positions}) == len(snap.positions)
    for p in snap.positions:
        check_position(p, ACCOUNT, LATEST)
    if len(snap.positions) == len(doc["positions"]):
        for entry, p in zip(doc["positions"], snap.positions, strict=True):
            _check_sent(entry, p)


def _deals(doc: Any) -> None:
    try:
        deals = parse_deals(ACCOUNT, doc, RECEIVED)
    except PayloadError as exc:
        assert exc.reason in REASONS and exc.message and len(exc.message) < 500
        return
    assert len({d.ticket for d in deals}) == len(deals)
    for d in deals:
        check_deal(d, ACCOUNT, LATEST)
    if len(deals) == len(doc["deals"]):
        for entry, d in zip(doc["deals"], deals, strict=True):
            _check_sent(entry, d)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_document(doc: Any) -> None:
    _positions(doc)
    _deals(doc)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["account_id", "timestamp", "positions", "deals", "from", "to", "error"]), json_values
    )
)
def test_any_top_level_fields(patch: dict[str, Any]) -> None:
    _positions({**positions_answer(position_json(1)), **patch})
    _deals({**deals_answer(deal_json(1)), **patch})


_ids = (
    st.integers(-2, 2**64)
    | st.floats()
    | st.floats(0, 2**54).map(lambda x: x + 0.5)
    | st.from_regex(r"[0-9]{1,21}", fullmatch=True)
    | st.text(max_size=5)
)
_small = st.integers(-1, 300) | st.floats(-1, 300)
_amount = st.floats() | st.integers() | st.floats(-1e16, 1e16)
_near = st.floats(-3 * CLOCK_SKEW_TOLERANCE, 3 * CLOCK_SKEW_TOLERANCE, allow_nan=False).map(
    lambda s: (RECEIVED + timedelta(seconds=s)).isoformat()
)
_times = (
    _near
    | st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)), timezone(-timedelta(hours=9))])
    ).map(lambda t: t.isoformat())
    | st.datetimes().map(lambda t: t.isoformat())
)
_texts = st.text(max_size=70)
KINDS: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(["ticket", "identifier", "magic", "order", "position_id"], _ids),
    **dict.fromkeys(["type", "entry", "reason"], _small),
    **dict.fromkeys(["volume", "price_open", "sl", "tp", "price_current", "swap", "profit"], _amount),
    **dict.fromkeys(["price", "commission", "fee"], _amount),
    **dict.fromkeys(["time", "time_update"], _times),
    **dict.fromkeys(["symbol", "comment"], _texts),
}


def _patched(data: st.DataObject, entry: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    for _ in range(data.draw(st.integers(1, 2))):
        field = data.draw(st.sampled_from(fields))
        if data.draw(st.integers(0, 9)) == 0:
            entry.pop(field, None)
        else:
            entry[field] = data.draw(KINDS[field] | edges | json_values)
    return entry


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_any_position_field_values(data: st.DataObject) -> None:
    _positions(positions_answer(position_json(4), _patched(data, position_json(5), POSITION_FIELDS)))


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_any_deal_field_values(data: st.DataObject) -> None:
    _deals(deals_answer(deal_json(4), _patched(data, deal_json(5), DEAL_FIELDS)))


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_any_entries(entries: list[Any]) -> None:
    _positions(positions_answer(*entries))
    _deals(deals_answer(*entries))
