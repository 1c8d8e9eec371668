"""Deal builders for the analytics tests: hand-written histories read like a terminal's deal list."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.domain.trades import Deal, DealEntry, DealType

ACCOUNT = 500001


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


class Deals:
    """Appends deals with increasing tickets."""

    def __init__(self, account: int = ACCOUNT) -> None:
        self.account = account
        self.deals: list[Deal] = []

    def _add(self, **kw: object) -> Deal:
        base: dict[str, object] = {
            "account": self.account, "ticket": len(self.deals) + 1, "order": len(self.deals) + 1,
            "volume": 0.0, "price": 0.0, "commission": 0.0, "swap": 0.0, "profit": 0.0, "fee": 0.0,
            "symbol": "", "position_id": 0, "reason": 0,
        }  # fmt: skip
        base.update(kw)
        deal = Deal(**base)  # type: ignore[arg-type]
        self.deals.append(deal)
        return deal

    def balance(self, when: datetime, amount: float, kind: DealType = DealType.BALANCE) -> Deal:
        return self._add(time=when, type=kind, entry=DealEntry.IN, profit=amount)

    def trade(
        self,
        position: int,
        when: datetime,
        side: str,
        entry: DealEntry,
        volume: float,
        *,
        price: float = 1.1,
        profit: float = 0.0,
        commission: float = 0.0,
        swap: float = 0.0,
        fee: float = 0.0,
        symbol: str = "EURUSD",
        reason: int = 0,
    ) -> Deal:
        kind = DealType.BUY if side == "buy" else DealType.SELL
        return self._add(
            time=when, type=kind, entry=entry, volume=volume, price=price, profit=profit,
            commission=commission, swap=swap, fee=fee, symbol=symbol, position_id=position, reason=reason,
        )  # fmt: skip
