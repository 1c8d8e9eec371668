"""Positions, deals and trade events (DESIGN.md section 11). Plain types, no I/O.

A trade is a position, identified by `(account, identifier)`: MT5's position identifier never changes
(the ticket can). Enum values are MetaQuotes' own (the `MetaTrader5` package's constants), so what a
terminal reports needs no translation. Every time is a timezone-aware UTC datetime: broker time is
converted by the bridge before it leaves the terminal's machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any


class PositionType(IntEnum):
    BUY = 0
    SELL = 1


class PositionReason(IntEnum):
    CLIENT = 0
    MOBILE = 1
    WEB = 2
    EXPERT = 3


class DealType(IntEnum):
    """Only BUY and SELL are trades; every other type is a balance operation (deposit, withdrawal,
    credit, charge, correction, bonus, commission, interest, dividend, tax), never a trade."""

    BUY = 0
    SELL = 1
    BALANCE = 2
    CREDIT = 3
    CHARGE = 4
    CORRECTION = 5
    BONUS = 6
    COMMISSION = 7
    COMMISSION_DAILY = 8
    COMMISSION_MONTHLY = 9
    COMMISSION_AGENT_DAILY = 10
    COMMISSION_AGENT_MONTHLY = 11
    INTEREST = 12
    BUY_CANCELED = 13
    SELL_CANCELED = 14
    DIVIDEND = 15
    DIVIDEND_FRANKED = 16
    TAX = 17


class DealEntry(IntEnum):
    IN = 0
    OUT = 1
    INOUT = 2  # a reversal (netting accounts)
    OUT_BY = 3  # closed by an opposite position


class DealReason(IntEnum):
    CLIENT = 0
    MOBILE = 1
    WEB = 2
    EXPERT = 3
    SL = 4
    TP = 5
    SO = 6  # stop out
    ROLLOVER = 7
    VMARGIN = 8
    SPLIT = 9


@dataclass(frozen=True, slots=True)
class Position:
    """One open position as the terminal reports it (`positions_get`)."""

    account: int
    ticket: int
    identifier: int
    time: datetime  # opened
    time_update: datetime
    type: PositionType
    magic: int
    reason: int
    volume: float
    price_open: float
    sl: float  # 0.0: none (MT5's convention)
    tp: float
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Deal:
    """One deal of the account's history (`history_deals_get`)."""

    account: int
    ticket: int
    order: int
    time: datetime
    type: DealType
    entry: DealEntry
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    position_id: int  # the position identifier; 0 for balance operations
    magic: int = 0
    reason: int = 0
    comment: str = ""

    @property
    def is_trade(self) -> bool:
        return self.type in (DealType.BUY, DealType.SELL)

    @property
    def result(self) -> float:
        """What this deal adds to its trade's realised P&L."""
        return self.profit + self.commission + self.swap + self.fee


@dataclass(frozen=True, slots=True)
class PositionsSnapshot:
    """Every open position of one account at one instant (`as_of`, the terminal's read time).
    `as_of_event_id`: every stored event with an id up to it is reflected in these positions (set by the
    store when it keeps the snapshot; the API's `as_of_event_id`, where a client resumes the events)."""

    account: int
    as_of: datetime
    positions: tuple[Position, ...]
    as_of_event_id: int | None = None


class EventType(StrEnum):
    TRADE_OPENED = "TRADE_OPENED"
    TRADE_UPDATED = "TRADE_UPDATED"
    TRADE_CLOSED = "TRADE_CLOSED"


class UpdateChange(StrEnum):
    SL_TP = "sl_tp"
    VOLUME_ADDED = "volume_added"
    PARTIAL_CLOSE = "partial_close"
    REVERSAL = "reversal"


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """One detected change of a trade. `id` is assigned by the store (increasing integers); `dedup_key`
    is derived from the terminal's own identities (a deal ticket, or the sl/tp values of a modification),
    so detecting the same change again (restart, retry, overlapping poll, duplicated callback) never
    stores it twice. `time` is the terminal's time of the change; `detected_at` the agent's."""

    account: int
    identifier: int
    type: EventType
    dedup_key: str
    time: datetime
    detected_at: datetime
    symbol: str
    data: Mapping[str, Any] = field(default_factory=dict)  # per type, DESIGN.md section 11's table
    id: int | None = None
