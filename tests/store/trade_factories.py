"""Builders for positions, deals and trade events in store tests."""

from __future__ import annotations

from datetime import datetime, timedelta
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

from .factories import T0


def position(account: int, identifier: int, **kw: Any) -> Position:
    base: dict[str, Any] = dict(
        account=account,
        ticket=identifier + 7,
        identifier=identifier,
        time=T0.replace(microsecond=123456),
        time_update=T0 + timedelta(seconds=5, microseconds=999999),
        type=PositionType.SELL,
        magic=20251024,
        reason=3,
        volume=0.1 + 0.2,  # 0.30000000000000004: must come back exactly
        price_open=1.08453,
        sl=1.0912,
        tp=0.0,
        price_current=1.08321,
        swap=-0.37,
        profit=13.2,
        symbol="EURUSD.m",
        comment='ümlaut ✓ "quoted"',
    )
    base.update(kw)
    return Position(**base)


def snapshot(account: int, *positions: Position, as_of: datetime = T0, **kw: Any) -> PositionsSnapshot:
    return PositionsSnapshot(account=account, as_of=as_of, positions=tuple(positions), **kw)


def deal(account: int, ticket: int, **kw: Any) -> Deal:
    base: dict[str, Any] = dict(
        account=account,
        ticket=ticket,
        order=ticket + 1000,
        time=T0 + timedelta(seconds=ticket % 100_000, microseconds=456789),
        type=DealType.BUY,
        entry=DealEntry.IN,
        volume=0.25,
        price=2651.37,
        commission=-1.75,
        swap=0.0,
        profit=0.0,
        fee=-0.05,
        symbol="XAUUSD",
        position_id=500,
        magic=7,
        reason=0,
        comment="",
    )
    base.update(kw)
    return Deal(**base)


def event(account: int, key: str, type: EventType = EventType.TRADE_OPENED, **kw: Any) -> TradeEvent:
    base: dict[str, Any] = dict(
        account=account,
        identifier=500,
        type=type,
        dedup_key=key,
        time=T0.replace(microsecond=250999),
        detected_at=T0 + timedelta(seconds=1, microseconds=100),
        symbol="XAUUSD",
        data={"side": "buy", "volume": 0.1 + 0.2, "sl": 0.0, "tp": 2700.5},
    )
    base.update(kw)
    return TradeEvent(**base)
