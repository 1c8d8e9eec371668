"""MetaAPI's models (the SDK's `MetatraderAccountInformation`, `MetatraderPosition`, `MetatraderDeal`
dicts) validated into the domain types with the bridge parser's bounds (`agent.sources.bridge.parse*`).

What MetaAPI names differently is translated, never invented:
- enums come as names (`POSITION_TYPE_SELL`, `DEAL_ENTRY_OUT`, `DEAL_REASON_SL`) and become MetaQuotes'
  values; `*_REASON_UNKNOWN` or no reason becomes `REASON_UNKNOWN` (255, outside MetaQuotes' 0..9);
- a position's `id` is MT5's position identifier and ticket; its `profit`/`swap` are MT5's when MetaAPI
  splits them (`unrealizedProfit`, `unrealizedSwap`: the open part, as `positions_get` reports);
- what MetaAPI leaves out when MT5 has none: `stopLoss`/`takeProfit` -> 0.0 (MT5's "none"),
  `comment` -> "", a deal's `orderId` -> 0 (the detector's "no order ticket"), `commission`/`swap` -> 0.0,
  `magic` -> 0; a balance operation's volume and price -> 0.0 and entry -> IN (as MT5 reports them);
- MetaAPI serves no deal `fee`: it is 0.0 (docs/metaapi.md).
The account's `profit` is not sent by MetaAPI and stays None (never equity - balance).
Nothing here raises anything but `PayloadError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, TypeVar

from agent.domain.accounts import AccountSnapshot, Reason
from agent.domain.trades import Deal, DealEntry, DealReason, DealType, Position, PositionReason, PositionType
from agent.sources.bridge.parse import (
    CLOCK_SKEW_TOLERANCE,
    MIN_TIMESTAMP,
    PayloadError,
    parse_account_id,
    parse_values,
    text_field,
)
from agent.sources.bridge.parse_trades import (
    MAX_COMMENT,
    MAX_SYMBOL,
    parse_int,
    parse_money,
    parse_text,
    parse_utc_time,
    parse_volume,
)

REASON_UNKNOWN = 255
ACCOUNT_REQUIRED = ("balance", "equity", "margin", "margin_free", "currency")

E = TypeVar("E", bound=IntEnum)


def _names(enum: type[E], *prefixes: str) -> dict[str, E]:
    return {f"{p}{m.name}": m for m in enum for p in prefixes}


POSITION_TYPES = _names(PositionType, "POSITION_TYPE_")
POSITION_REASONS = _names(PositionReason, "POSITION_REASON_")
DEAL_TYPES = _names(DealType, "DEAL_TYPE_", "DEAL_")  # MetaAPI spells DEAL_DIVIDEND, DEAL_TAX
DEAL_ENTRIES = _names(DealEntry, "DEAL_ENTRY_")
DEAL_REASONS = _names(DealReason, "DEAL_REASON_")


def invalid(message: str) -> PayloadError:
    return PayloadError(Reason.INVALID_PAYLOAD, message)


def _enum(name: str, value: Any, table: Mapping[str, E]) -> E:
    member = table.get(value) if type(value) is str else None
    if member is None:
        shown = repr(value[:40]) if type(value) is str else type(value).__name__
        raise invalid(f"{name} {shown} is not a known MetaAPI value")
    return member


def _reason(name: str, value: Any, table: Mapping[str, IntEnum]) -> int:
    if value is None or (type(value) is str and value.endswith("_REASON_UNKNOWN")):
        return REASON_UNKNOWN
    return int(_enum(name, value, table))


def parse_time(name: str, value: Any, latest: datetime) -> datetime:
    """The SDK's tz-aware datetime (or an ISO-8601 string with an offset), as UTC in [2000, latest]."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise invalid(f"{name} has no time zone")
        try:
            ts = value.astimezone(UTC)
        except (OverflowError, ValueError):
            raise invalid(f"{name} is not a time between 2000-01-01 and now") from None
        if not MIN_TIMESTAMP <= ts <= latest:
            raise invalid(f"{name} {ts.isoformat()} is not between 2000-01-01 and the receive time")
        return ts
    return parse_utc_time(name, value, latest)


def _get(item: Mapping[str, Any], key: str) -> Any:
    value = item.get(key)
    if value is None:
        raise invalid(f"{key} is missing")
    return value


def _opt(item: Mapping[str, Any], key: str, default: Any) -> Any:
    value = item.get(key)
    return default if value is None else value


BROKER_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_OFFSET_MINUTES = 14 * 60


def broker_offset(item: Any) -> tuple[datetime, int] | None:
    """(the item's UTC time, the broker's UTC offset in minutes) told by an item's `time` (UTC) beside its
    `brokerTime` (the broker's wall clock, `YYYY-MM-DD HH:mm:ss.SSS`), the offset to the quarter hour;
    None when either is missing or odd (it never fails a read: it only names broker days)."""
    if not isinstance(item, Mapping):
        return None
    broker_text, utc_value = item.get("brokerTime"), item.get("time")
    if type(broker_text) is not str or len(broker_text) > 40:
        return None
    try:
        broker = datetime.strptime(broker_text[:19], BROKER_TIME_FORMAT)
        if isinstance(utc_value, datetime):
            utc = utc_value
        elif type(utc_value) is str and len(utc_value) <= 40:
            utc = datetime.fromisoformat(utc_value.replace("Z", "+00:00"))
        else:
            return None
        if utc.tzinfo is None:
            return None
        utc = utc.astimezone(UTC)
        seconds = (broker - utc.replace(tzinfo=None)).total_seconds()
    except (ValueError, TypeError, OverflowError):
        return None
    minutes = round(seconds / 900) * 15
    return (utc, minutes) if abs(minutes) <= MAX_OFFSET_MINUTES else None


def latest_for(received_at: datetime) -> datetime:
    return received_at + timedelta(seconds=CLOCK_SKEW_TOLERANCE)


def account_snapshot(login: int, info: Any, received_at: datetime) -> AccountSnapshot:
    """`MetatraderAccountInformation` for `login` -> a live snapshot read at `received_at`."""
    if not isinstance(info, Mapping):
        raise invalid("account information is not an object")
    login_value = info.get("login")
    if login_value is None:
        raise invalid("account information carries no login")
    try:
        got = parse_account_id(login_value)
    except PayloadError:
        raise invalid("account information login is not an account number") from None
    if got != login:
        raise PayloadError(Reason.ACCOUNT_MISMATCH, f"MetaAPI served login {got}'s data for login {login}")
    values = parse_values(
        {
            "balance": info.get("balance"),
            "equity": info.get("equity"),
            "margin": info.get("margin"),
            "margin_free": info.get("freeMargin"),
            "margin_level": info.get("marginLevel"),
            "leverage": info.get("leverage"),
            "currency": info.get("currency"),
            "trade_allowed": info.get("tradeAllowed"),
        },
        required=ACCOUNT_REQUIRED,
    )
    return AccountSnapshot(
        values=values,
        live=True,
        read_at=received_at,
        name=text_field(info.get("name")),
        server=text_field(info.get("server")),
    )


def position_id(item: Any) -> int:
    if not isinstance(item, Mapping):
        raise invalid("position is not an object")
    return parse_int("id", _get(item, "id"), positive=True)


def position(account: int, item: Any, latest: datetime) -> Position:
    """`MetatraderPosition` -> Position; PayloadError naming the position and field."""
    pid = position_id(item)
    try:
        return _position(account, pid, item, latest)
    except PayloadError as exc:
        raise invalid(f"position {pid}: {exc.message}") from None


def _position(account: int, pid: int, p: Mapping[str, Any], latest: datetime) -> Position:
    profit = p.get("unrealizedProfit", p.get("profit"))
    swap = p.get("unrealizedSwap", p.get("swap"))
    if profit is None:
        raise invalid("profit is missing")
    return Position(
        account=account,
        ticket=pid,
        identifier=pid,
        time=parse_time("time", _get(p, "time"), latest),
        time_update=parse_time("updateTime", _get(p, "updateTime"), latest),
        type=_enum("type", _get(p, "type"), POSITION_TYPES),
        magic=parse_int("magic", _opt(p, "magic", 0), positive=False),
        reason=_reason("reason", p.get("reason"), POSITION_REASONS),
        volume=parse_volume("volume", _get(p, "volume")),
        price_open=parse_money("openPrice", _get(p, "openPrice")),
        sl=parse_money("stopLoss", _opt(p, "stopLoss", 0.0)),
        tp=parse_money("takeProfit", _opt(p, "takeProfit", 0.0)),
        price_current=parse_money("currentPrice", _get(p, "currentPrice")),
        swap=parse_money("swap", 0.0 if swap is None else swap),
        profit=parse_money("profit", profit),
        symbol=parse_text("symbol", _get(p, "symbol"), MAX_SYMBOL, required=True),
        comment=parse_text("comment", _opt(p, "comment", ""), MAX_COMMENT, required=False),
    )


def deal(account: int, item: Any, latest: datetime) -> Deal:
    """`MetatraderDeal` -> Deal; PayloadError naming the deal and field."""
    if not isinstance(item, Mapping):
        raise invalid("deal is not an object")
    ticket = parse_int("id", _get(item, "id"), positive=True)
    try:
        return _deal(account, ticket, item, latest)
    except PayloadError as exc:
        raise invalid(f"deal {ticket}: {exc.message}") from None


def _deal(account: int, ticket: int, d: Mapping[str, Any], latest: datetime) -> Deal:
    deal_type = _enum("type", _get(d, "type"), DEAL_TYPES)
    trade = deal_type in (DealType.BUY, DealType.SELL)
    need = _get if trade else (lambda m, k: _opt(m, k, 0.0))
    entry = _get(d, "entryType") if trade else _opt(d, "entryType", "DEAL_ENTRY_IN")
    return Deal(
        account=account,
        ticket=ticket,
        order=parse_int("orderId", _opt(d, "orderId", 0), positive=False),
        time=parse_time("time", _get(d, "time"), latest),
        type=deal_type,
        entry=_enum("entryType", entry, DEAL_ENTRIES),
        volume=parse_volume("volume", need(d, "volume")),
        price=parse_money("price", need(d, "price")),
        commission=parse_money("commission", _opt(d, "commission", 0.0)),
        swap=parse_money("swap", _opt(d, "swap", 0.0)),
        profit=parse_money("profit", _get(d, "profit")),
        fee=0.0,
        symbol=parse_text(
            "symbol", _get(d, "symbol") if trade else _opt(d, "symbol", ""), MAX_SYMBOL, required=trade
        ),
        position_id=parse_int(
            "positionId", _get(d, "positionId") if trade else _opt(d, "positionId", 0), positive=trade
        ),
        magic=parse_int("magic", _opt(d, "magic", 0), positive=False),
        reason=_reason("reason", d.get("reason"), DEAL_REASONS),
        comment=parse_text("comment", _opt(d, "comment", ""), MAX_COMMENT, required=False),
    )


def deals(account: int, items: Iterable[Any], latest: datetime) -> list[Deal]:
    """Deals by ticket in (time, ticket) order; a ticket delivered twice (two server instances) is kept
    once, the first seen (MetaAPI's history storage may hold both copies)."""
    seen: dict[int, Deal] = {}
    for item in items:
        d = deal(account, item, latest)
        seen.setdefault(d.ticket, d)
    return sorted(seen.values(), key=lambda d: (d.time, d.ticket))
