"""What the detector accepts. Validation proper is the source parser's job; these checks only keep the
detector total: an inconsistent position or deal is set aside with a reason, never raised."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionType

TRADE_ENTRIES = frozenset(int(e) for e in DealEntry)


def utc(t: datetime) -> datetime:
    """Aware UTC (a naive time is taken as UTC: comparing naive with aware would raise)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _finite(*xs: float) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def is_trade_deal(d: Deal) -> bool:
    """Only BUY and SELL deals are trades; balance operations belong to analytics."""
    return d.type in (DealType.BUY, DealType.SELL) and int(d.type) in (0, 1)


def check_deal(d: Deal) -> tuple[Deal | None, str | None]:
    """(the deal with its time in UTC, None) or (None, why it is set aside)."""
    if not is_trade_deal(d):
        return None, None  # not a trade: ignored, not an error
    if int(d.entry) not in TRADE_ENTRIES:
        return None, f"deal {d.ticket}: unknown entry {int(d.entry)}"
    if d.position_id <= 0 or d.ticket <= 0:
        return None, f"deal {d.ticket}: ticket and position_id must be positive"
    if not _finite(d.volume, d.price, d.commission, d.swap, d.profit, d.fee) or d.volume <= 0:
        return None, f"deal {d.ticket}: volume must be > 0 and amounts finite"
    try:
        t = utc(d.time)
    except (OverflowError, ValueError):
        return None, f"deal {d.ticket}: time out of range"
    return (d if t is d.time else dataclasses.replace(d, time=t)), None


def check_position(p: Position) -> tuple[Position | None, str | None]:
    if p.identifier <= 0:
        return None, f"position {p.ticket}: identifier must be positive"
    if int(p.type) not in (int(PositionType.BUY), int(PositionType.SELL)):
        return None, f"position {p.identifier}: unknown type {int(p.type)}"
    if not _finite(p.volume, p.price_open, p.sl, p.tp) or p.volume <= 0:
        return None, f"position {p.identifier}: volume must be > 0 and prices finite"
    try:
        t, tu = utc(p.time), utc(p.time_update)
    except (OverflowError, ValueError):
        return None, f"position {p.identifier}: time out of range"
    if t is p.time and tu is p.time_update:
        return p, None
    return dataclasses.replace(p, time=t, time_update=tu), None
