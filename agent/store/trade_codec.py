"""Positions, deals and trade events as stored documents, shared by both stores so SQLite and MongoDB give
back identical values: times as aware UTC at millisecond precision (codec.utc_ms), enums by value, an
event's `data` as plain JSON (dicts and lists)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.domain.trades import (
    Deal,
    DealEntry,
    DealType,
    EventType,
    Position,
    PositionsSnapshot,
    PositionType,
    TradeEvent,
)
from agent.store.codec import parse_dt, utc_ms

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # what a garbage stored time reads as


def _dt(value: Any, field: str) -> datetime:
    return parse_dt(value, field) or _EPOCH  # garbage is logged by parse_dt


def position_to_doc(p: Position) -> dict[str, Any]:
    """Without `account`: positions are stored inside their account's snapshot."""
    return {
        "ticket": p.ticket,
        "identifier": p.identifier,
        "time": utc_ms(p.time),
        "time_update": utc_ms(p.time_update),
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


def position_from_doc(account: int, d: Mapping[str, Any]) -> Position:
    return Position(
        account=account,
        ticket=int(d["ticket"]),
        identifier=int(d["identifier"]),
        time=_dt(d.get("time"), "time"),
        time_update=_dt(d.get("time_update"), "time_update"),
        type=PositionType(d["type"]),
        magic=int(d.get("magic") or 0),
        reason=int(d.get("reason") or 0),
        volume=float(d["volume"]),
        price_open=float(d["price_open"]),
        sl=float(d.get("sl") or 0.0),
        tp=float(d.get("tp") or 0.0),
        price_current=float(d["price_current"]),
        swap=float(d.get("swap") or 0.0),
        profit=float(d.get("profit") or 0.0),
        symbol=str(d["symbol"]),
        comment=str(d.get("comment") or ""),
    )


def snapshot_to_doc(snapshot: PositionsSnapshot, as_of_event_id: int) -> dict[str, Any]:
    return {
        "account": snapshot.account,
        "as_of": utc_ms(snapshot.as_of),
        "as_of_event_id": as_of_event_id,
        "positions": [position_to_doc(p) for p in snapshot.positions],
    }


def snapshot_from_doc(d: Mapping[str, Any]) -> PositionsSnapshot:
    account = int(d["account"])
    event_id = d.get("as_of_event_id")
    return PositionsSnapshot(
        account=account,
        as_of=_dt(d.get("as_of"), "as_of"),
        positions=tuple(position_from_doc(account, p) for p in d.get("positions") or ()),
        as_of_event_id=int(event_id) if event_id is not None else None,
    )


def deal_to_doc(x: Deal) -> dict[str, Any]:
    return {
        "account": x.account,
        "ticket": x.ticket,
        "order": x.order,
        "time": utc_ms(x.time),
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


def deal_from_doc(d: Mapping[str, Any]) -> Deal:
    return Deal(
        account=int(d["account"]),
        ticket=int(d["ticket"]),
        order=int(d.get("order") or 0),
        time=_dt(d.get("time"), "time"),
        type=DealType(d["type"]),
        entry=DealEntry(d["entry"]),
        volume=float(d["volume"]),
        price=float(d["price"]),
        commission=float(d.get("commission") or 0.0),
        swap=float(d.get("swap") or 0.0),
        profit=float(d.get("profit") or 0.0),
        fee=float(d.get("fee") or 0.0),
        symbol=str(d.get("symbol") or ""),
        position_id=int(d.get("position_id") or 0),
        magic=int(d.get("magic") or 0),
        reason=int(d.get("reason") or 0),
        comment=str(d.get("comment") or ""),
    )


def plain_json(value: Any) -> Any:
    """Mappings as dicts and tuples as lists: what either store gives back (checked JSON already)."""
    if isinstance(value, Mapping):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def event_to_doc(e: TradeEvent) -> dict[str, Any]:
    """Without the id, which the store assigns."""
    return {
        "dedup_key": e.dedup_key,
        "account": e.account,
        "identifier": e.identifier,
        "type": e.type.value,
        "time": utc_ms(e.time),
        "detected_at": utc_ms(e.detected_at),
        "symbol": e.symbol,
        "data": plain_json(e.data),
    }


def event_from_doc(event_id: int, d: Mapping[str, Any]) -> TradeEvent | None:
    """None (logged) for an event type this version does not know (written by a newer agent)."""
    try:
        kind = EventType(d["type"])
    except ValueError:
        log.warning("unknown event type %r stored for event %s; skipped", d.get("type"), event_id)
        return None
    return TradeEvent(
        account=int(d["account"]),
        identifier=int(d["identifier"]),
        type=kind,
        dedup_key=str(d["dedup_key"]),
        time=_dt(d.get("time"), "time"),
        detected_at=_dt(d.get("detected_at"), "detected_at"),
        symbol=str(d.get("symbol") or ""),
        data=dict(d.get("data") or {}),
        id=event_id,
    )


def last_per_ticket(deals: Sequence[Deal]) -> list[Deal]:
    """One deal per (account, ticket), the last one winning: the same deal twice is stored once."""
    return list({(d.account, d.ticket): d for d in deals}.values())


def unique_by_key(events: list[TradeEvent]) -> list[TradeEvent]:
    """The first event per dedup_key, in input order: a batch repeating a change stores it once."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e.dedup_key not in seen:
            seen.add(e.dedup_key)
            out.append(e)
    return out
