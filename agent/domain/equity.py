"""Recorded equity: an account's equity and balance at an instant the terminal gave them live. Plain types,
no I/O. What is recorded and when is decided by `agent.analytics.equity` (sampling); the store keeps the
points (`store.equity`), the analytics read them back for drawdown from equity (DESIGN.md section 12)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class EquityPoint:
    """`time` is when the terminal read these values (the account's `live_data_at`), never when the agent
    wrote them: a stored (fallback) value is never stamped as a new point."""

    account: int
    time: datetime
    equity: float
    balance: float | None = None
