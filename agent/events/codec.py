"""Positions and deals to and from plain JSON-able dicts (the detector's serialised state)."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Any, TypeVar

from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionType

E = TypeVar("E", bound=IntEnum)


def _enum(cls: type[E], value: Any) -> Any:
    """The enum member when known; the bare int otherwise (a state must load whatever it saved)."""
    try:
        return cls(int(value))
    except ValueError:
        return int(value)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def position_to_dict(p: Position) -> dict[str, Any]:
    return {
        "account": p.account,
        "ticket": p.ticket,
        "identifier": p.identifier,
        "time": p.time.isoformat(),
        "time_update": p.time_update.isoformat(),
        "type": int(p.type),
        "magic": p.magic,
        "reason": int(p.reason),
        "volume": p.volume,
        "price_open": p.price_open,
        "sl": p.sl,
        "tp": p.tp,
        "price_current": p.price_current,
        "swap": p.swap,
        "profit": p.profit,
        "symbol": p.symbol,
        "comment": p.comment,
    }


def position_from_dict(d: dict[str, Any]) -> Position:
    return Position(
        account=int(d["account"]),
        ticket=int(d["ticket"]),
        identifier=int(d["identifier"]),
        time=_time(d["time"]),
        time_update=_time(d["time_update"]),
        type=_enum(PositionType, d["type"]),
        magic=int(d["magic"]),
        reason=int(d["reason"]),
        volume=float(d["volume"]),
        price_open=float(d["price_open"]),
        sl=float(d["sl"]),
        tp=float(d["tp"]),
        price_current=float(d["price_current"]),
        swap=float(d["swap"]),
        profit=float(d["profit"]),
        symbol=str(d["symbol"]),
        comment=str(d.get("comment", "")),
    )


def deal_to_dict(x: Deal) -> dict[str, Any]:
    return {
        "account": x.account,
        "ticket": x.ticket,
        "order": x.order,
        "time": x.time.isoformat(),
        "type": int(x.type),
        "entry": int(x.entry),
        "volume": x.volume,
        "price": x.price,
        "commission": x.commission,
        "swap": x.swap,
        "profit": x.profit,
        "fee": x.fee,
        "symbol": x.symbol,
        "position_id": x.position_id,
        "magic": x.magic,
        "reason": int(x.reason),
        "comment": x.comment,
    }


def deal_from_dict(d: dict[str, Any]) -> Deal:
    return Deal(
        account=int(d["account"]),
        ticket=int(d["ticket"]),
        order=int(d["order"]),
        time=_time(d["time"]),
        type=_enum(DealType, d["type"]),
        entry=_enum(DealEntry, d["entry"]),
        volume=float(d["volume"]),
        price=float(d["price"]),
        commission=float(d["commission"]),
        swap=float(d["swap"]),
        profit=float(d["profit"]),
        fee=float(d["fee"]),
        symbol=str(d["symbol"]),
        position_id=int(d["position_id"]),
        magic=int(d.get("magic", 0)),
        reason=int(d.get("reason", 0)),
        comment=str(d.get("comment", "")),
    )
