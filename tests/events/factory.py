"""Small builders for positions, deals and snapshots (tests of the detector)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionsSnapshot, PositionType

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ACC = 1001


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def position(
    identifier: int,
    *,
    buy: bool = True,
    volume: float = 1.0,
    price_open: float = 1.1,
    sl: float = 0.0,
    tp: float = 0.0,
    opened: float = 0,
    updated: float | None = None,
    account: int = ACC,
    symbol: str = "EURUSD",
) -> Position:
    return Position(
        account=account,
        ticket=identifier,
        identifier=identifier,
        time=at(opened),
        time_update=at(opened if updated is None else updated),
        type=PositionType.BUY if buy else PositionType.SELL,
        magic=0,
        reason=0,
        volume=volume,
        price_open=price_open,
        sl=sl,
        tp=tp,
        price_current=price_open,
        swap=0.0,
        profit=0.0,
        symbol=symbol,
    )


def deal(
    ticket: int,
    identifier: int,
    entry: DealEntry,
    *,
    buy: bool,
    volume: float,
    time: float,
    price: float = 1.1,
    profit: float = 0.0,
    commission: float = 0.0,
    swap: float = 0.0,
    fee: float = 0.0,
    reason: int = 0,
    order: int | None = None,
    opens: bool = False,
    account: int = ACC,
    symbol: str = "EURUSD",
    type_: DealType | None = None,
) -> Deal:
    if order is None:
        order = identifier if opens else ticket + 500_000  # MT5: the opening order's ticket is the identifier
    return Deal(
        account=account,
        ticket=ticket,
        order=order,
        time=at(time),
        type=type_ if type_ is not None else (DealType.BUY if buy else DealType.SELL),
        entry=entry,
        volume=volume,
        price=price,
        commission=commission,
        swap=swap,
        profit=profit,
        fee=fee,
        symbol=symbol,
        position_id=identifier,
        reason=reason,
    )


def snapshot(as_of: float, *positions: Position, account: int = ACC) -> PositionsSnapshot:
    return PositionsSnapshot(account=account, as_of=at(as_of), positions=tuple(positions))
