"""Validation of positions and deals a bridge sends (DESIGN.md section 11) into the domain types.

Same rules as the account parser (`parse`): nothing defaults a missing value, every value is checked
into a bounded domain before it can reach a store, an event or a metric, and nothing here raises
anything but `PayloadError` for any JSON value (tests/sources/test_parse_trades_property.py drives it
with hypothesis). Bounds: tickets, identifiers, orders and magic numbers are int64 integers (a JSON
number, an integral float below 2**53 or a string of ASCII digits; never a bool); volumes lie in
[0, MAX_VOLUME]; prices and money in +-1e15; enums take MetaQuotes' values only; every time is
ISO-8601 *with* a UTC offset (a naive time may be broker time, which would shift every event by the
terminal's offset) between 2000-01-01 and the receive time plus the clock-skew tolerance; symbols and
comments are short printable strings; a list holds at most MAX_POSITIONS / MAX_DEALS entries.

One bad entry fails the whole answer (that account's read) with a message naming the entry and the
field: an account's positions are only useful complete, and a deal skipped would be a lost event.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar

from agent.domain.accounts import Reason
from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionsSnapshot, PositionType
from agent.sources.bridge.parse import (
    CLOCK_SKEW_TOLERANCE,
    MAX_ABS_VALUE,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    ClockSkewError,
    PayloadError,
    _invalid,
    _json_type,
    _number,
    _show,
    error_text,
    parse_account_id,
    reason_for_code,
)

MAX_INT64 = 2**63 - 1
_EXACT_INT = 2**53
_MAX_INT_DIGITS = len(str(MAX_INT64))
MAX_VOLUME = 1e10  # lots; no instrument trades near it (crypto in units stays far below)
MAX_REASON = 255  # MT5 reasons are 0..9 today; a small int leaves room for new ones
MAX_SYMBOL = 64
MAX_COMMENT = 256
MAX_POSITIONS = 10_000  # per account and answer
MAX_DEALS = 100_000  # per account and call (the poller asks for short windows)
_MAX_TIME_TEXT = 64
_MISSING = object()

POSITION_FIELDS = (
    "ticket",
    "identifier",
    "time",
    "time_update",
    "type",
    "magic",
    "reason",
    "volume",
    "price_open",
    "sl",
    "tp",
    "price_current",
    "swap",
    "profit",
    "symbol",
    "comment",
)
DEAL_FIELDS = (
    "ticket",
    "order",
    "time",
    "type",
    "entry",
    "volume",
    "price",
    "commission",
    "swap",
    "profit",
    "fee",
    "symbol",
    "comment",
    "position_id",
    "magic",
    "reason",
)

_POSITION_KEYS = frozenset(POSITION_FIELDS)
_DEAL_KEYS = frozenset(DEAL_FIELDS)

E = TypeVar("E", bound=IntEnum)


def parse_int(name: str, value: Any, *, positive: bool) -> int:
    """An int64 identity (ticket, identifier, order, magic): positive or non-negative."""
    lo = 1 if positive else 0
    t = type(value)
    if t is int:
        if lo <= value <= MAX_INT64:
            return value
    elif t is str:
        if 0 < len(value) <= _MAX_INT_DIGITS and value.isascii() and value.isdigit():
            n = int(value)
            if lo <= n <= MAX_INT64:
                return n
    elif t is float:
        if value.is_integer() and lo <= value <= _EXACT_INT:
            return int(value)
    kind = "positive" if positive else "non-negative"
    raise _invalid(f"{name} {_show(value)} is not a {kind} 64-bit integer")


def _small_int(name: str, value: Any, hi: int) -> int:
    t = type(value)
    if t is int and 0 <= value <= hi:
        return value
    if t is float and value.is_integer() and 0 <= value <= hi:
        return int(value)
    raise _invalid(f"{name} {_show(value)} is not an integer in 0..{hi}")


def parse_enum(name: str, value: Any, enum: type[E]) -> E:
    t = type(value)
    n = value if t is int else int(value) if t is float and value.is_integer() else None
    member = enum._value2member_map_.get(n) if n is not None else None
    if member is not None:
        return member  # type: ignore[return-value]
    allowed = ", ".join(str(m.value) for m in enum)
    raise _invalid(f"{name} {_show(value)} is not one of {allowed} ({enum.__name__})")


def parse_volume(name: str, value: Any) -> float:
    v = _number(name, value)
    if not 0.0 <= v <= MAX_VOLUME:
        raise _invalid(f"{name} {v!r} is not a volume in 0..{MAX_VOLUME:g}")
    return v


def parse_money(name: str, value: Any) -> float:
    """A price, profit, swap, commission or fee: finite, within +-1e15."""
    if type(value) is float and -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:
        return value
    return _number(name, value)


def parse_text(name: str, value: Any, limit: int, *, required: bool) -> str:
    if type(value) is not str:
        raise _invalid(f"{name} is {_json_type(value)}, not a string")
    if len(value) > limit:
        raise _invalid(f"{name} is longer than {limit} characters")
    if not value.isprintable():  # control characters, lone surrogates, unassigned code points
        raise _invalid(f"{name} {_show(value)} holds non-printable characters")
    if required and not value.strip():
        raise _invalid(f"{name} is empty")
    return value


def parse_utc_time(name: str, value: Any, latest: datetime) -> datetime:
    """ISO-8601 with an offset, as a UTC datetime in [2000-01-01, latest]."""
    if type(value) is not str:
        raise _invalid(f"{name} is {_json_type(value)}, not an ISO-8601 UTC time")
    if len(value) > _MAX_TIME_TEXT:
        raise _invalid(f"{name} {_show(value)} is not an ISO-8601 time")
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"{name} {_show(value)} is not an ISO-8601 time") from None
    if ts.tzinfo is None:
        raise _invalid(f"{name} {_show(value)} has no UTC offset (naive broker time?)")
    try:
        ts = ts.astimezone(UTC)
    except OverflowError:  # "0001-01-01T00:00:00+01:00"
        raise _invalid(f"{name} {_show(value)} is not between 2000-01-01 and now") from None
    if ts < MIN_TIMESTAMP:
        raise _invalid(f"{name} {_show(value)} is before 2000-01-01")
    if ts > latest:
        raise _invalid(
            f"{name} {_show(value)} is ahead of the receive time by more than the clock-skew tolerance "
            "(bridge clock or broker time offset wrong?)"
        )
    return ts


def _answer(payload: Any, account: int, key: str) -> dict[str, Any]:
    """The answer's object after the checks shared by both endpoints: an error body, account_id."""
    if type(payload) is not dict:
        raise _invalid("response is not a JSON object")
    if "error" in payload and key not in payload:
        err = payload["error"]
        code = err.get("code") if type(err) is dict else None
        raise PayloadError(
            reason_for_code(code, Reason.INVALID_PAYLOAD), f"bridge reported an error: {error_text(err)}"
        )
    account_id = payload.get("account_id", _MISSING)
    if account_id is _MISSING:
        raise _invalid("account_id is missing")
    try:
        got = parse_account_id(account_id)
    except PayloadError:
        raise _invalid(f"account_id {_show(account_id)} is not an account number") from None
    if got != account:
        raise PayloadError(
            Reason.ACCOUNT_MISMATCH, f"bridge answered for account {got} when asked for {account}"
        )
    return payload


def _items(payload: dict[str, Any], key: str, limit: int) -> list[Any]:
    items = payload.get(key, _MISSING)
    if items is _MISSING:
        raise _invalid(f"{key} is missing")
    if type(items) is not list:
        raise _invalid(f"{key} is {_json_type(items)}, not an array")
    if len(items) > limit:
        raise _invalid(f"{key} holds {len(items)} entries, more than {limit}")
    return items


def positions_body(
    account: int, payload: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> tuple[datetime, datetime, list[Any]]:
    """`(as_of, latest, entries)` of a /positions answer: `as_of` is the terminal's read time (never
    after the receipt), `latest` the last time an entry may carry, `entries` still to parse."""
    body = _answer(payload, account, "positions")
    latest = received_at + timedelta(seconds=tolerance)
    if "timestamp" not in body:
        raise _invalid("timestamp is missing")
    source = parse_utc_time("timestamp", body["timestamp"], MAX_TIMESTAMP)
    ahead = (source - received_at).total_seconds()
    if ahead > tolerance:
        raise ClockSkewError(ahead, tolerance)
    return min(source, received_at), latest, _items(body, "positions", MAX_POSITIONS)


def parse_position(account: int, index: int, item: Any, latest: datetime) -> Position:
    where = f"positions[{index}]"
    if type(item) is not dict:
        raise _invalid(f"{where} is {_json_type(item)}, not an object")
    if not item.keys() >= _POSITION_KEYS:
        missing = next(f for f in POSITION_FIELDS if f not in item)
        raise _invalid(f"{where}.{missing} is missing")
    g = item.__getitem__
    try:
        return _position(account, g, latest)
    except PayloadError as exc:  # messages start with the field's name: prefix the entry's
        raise _invalid(f"{where}.{exc.message}") from None


def _position(account: int, g: Any, latest: datetime) -> Position:
    return Position(
        account=account,
        ticket=parse_int("ticket", g("ticket"), positive=True),
        identifier=parse_int("identifier", g("identifier"), positive=True),
        time=parse_utc_time("time", g("time"), latest),
        time_update=parse_utc_time("time_update", g("time_update"), latest),
        type=parse_enum("type", g("type"), PositionType),
        magic=parse_int("magic", g("magic"), positive=False),
        reason=_small_int("reason", g("reason"), MAX_REASON),
        volume=parse_volume("volume", g("volume")),
        price_open=parse_money("price_open", g("price_open")),
        sl=parse_money("sl", g("sl")),
        tp=parse_money("tp", g("tp")),
        price_current=parse_money("price_current", g("price_current")),
        swap=parse_money("swap", g("swap")),
        profit=parse_money("profit", g("profit")),
        symbol=parse_text("symbol", g("symbol"), MAX_SYMBOL, required=True),
        comment=parse_text("comment", g("comment"), MAX_COMMENT, required=False),
    )


def distinct_positions(positions: Iterable[Position]) -> tuple[Position, ...]:
    """One entry per identifier: an exact repeat is dropped, two different positions under one
    identifier make the snapshot unusable (a trade is keyed by `(account, identifier)`)."""
    seen: dict[int, Position] = {}
    for p in positions:
        old = seen.get(p.identifier)
        if old is None:
            seen[p.identifier] = p
        elif old != p:
            raise _invalid(f"positions: identifier {p.identifier} appears twice with different values")
    return tuple(seen.values())


def parse_positions(
    account: int, payload: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> PositionsSnapshot:
    """`/api/mt5/account/{id}/positions` -> the account's snapshot, or PayloadError."""
    as_of, latest, items = positions_body(account, payload, received_at, tolerance=tolerance)
    positions = distinct_positions(parse_position(account, i, item, latest) for i, item in enumerate(items))
    return PositionsSnapshot(account=account, as_of=as_of, positions=positions)


def deals_body(
    account: int, payload: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> tuple[datetime, list[Any]]:
    """`(latest, entries)` of a /trades answer; `from` and `to`, when sent, must be times in order."""
    body = _answer(payload, account, "deals")
    latest = received_at + timedelta(seconds=tolerance)
    bounds = []
    for name in ("from", "to"):
        value = body.get(name)
        if value is not None:  # the window echoed back; the agent knows what it asked
            bounds.append(parse_utc_time(name, value, MAX_TIMESTAMP))
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        raise _invalid("from is after to")
    return latest, _items(body, "deals", MAX_DEALS)


def parse_deal(account: int, index: int, item: Any, latest: datetime) -> Deal:
    where = f"deals[{index}]"
    if type(item) is not dict:
        raise _invalid(f"{where} is {_json_type(item)}, not an object")
    if not item.keys() >= _DEAL_KEYS:
        missing = next(f for f in DEAL_FIELDS if f not in item)
        raise _invalid(f"{where}.{missing} is missing")
    g = item.__getitem__
    try:
        return _deal(account, g, latest)
    except PayloadError as exc:  # messages start with the field's name: prefix the entry's
        raise _invalid(f"{where}.{exc.message}") from None


def _deal(account: int, g: Any, latest: datetime) -> Deal:
    deal_type = parse_enum("type", g("type"), DealType)
    trade = deal_type in (DealType.BUY, DealType.SELL)
    position_id = parse_int("position_id", g("position_id"), positive=trade)
    return Deal(
        account=account,
        ticket=parse_int("ticket", g("ticket"), positive=True),
        order=parse_int("order", g("order"), positive=False),
        time=parse_utc_time("time", g("time"), latest),
        type=deal_type,
        entry=parse_enum("entry", g("entry"), DealEntry),
        volume=parse_volume("volume", g("volume")),
        price=parse_money("price", g("price")),
        commission=parse_money("commission", g("commission")),
        swap=parse_money("swap", g("swap")),
        profit=parse_money("profit", g("profit")),
        fee=parse_money("fee", g("fee")),
        # A buy or sell belongs to a position on a symbol; a balance operation has neither.
        symbol=parse_text("symbol", g("symbol"), MAX_SYMBOL, required=trade),
        position_id=position_id,
        magic=parse_int("magic", g("magic"), positive=False),
        reason=_small_int("reason", g("reason"), MAX_REASON),
        comment=parse_text("comment", g("comment"), MAX_COMMENT, required=False),
    )


def distinct_deals(deals: Iterable[Deal]) -> list[Deal]:
    """One entry per ticket, in the order sent: an exact repeat is dropped, two different deals
    under one ticket make the answer unusable (a deal ticket is an event's identity)."""
    seen: dict[int, Deal] = {}
    for d in deals:
        old = seen.get(d.ticket)
        if old is None:
            seen[d.ticket] = d
        elif old != d:
            raise _invalid(f"deals: ticket {d.ticket} appears twice with different values")
    return list(seen.values())


def parse_deals(
    account: int, payload: Any, received_at: datetime, *, tolerance: float = CLOCK_SKEW_TOLERANCE
) -> list[Deal]:
    """`/api/mt5/account/{id}/trades` -> the account's deals in the window, or PayloadError."""
    latest, items = deals_body(account, payload, received_at, tolerance=tolerance)
    return distinct_deals(parse_deal(account, i, item, latest) for i, item in enumerate(items))
