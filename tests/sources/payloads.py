"""Valid /positions and /trades answers (DESIGN.md section 11) to break one field at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

ACCOUNT = 886557
RECEIVED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NOW_TEXT = "2026-01-05T12:00:00.000Z"


def position_json(ticket: Any = 1001, **kw: Any) -> dict[str, Any]:
    doc = {
        "ticket": ticket,
        "identifier": ticket,
        "time": "2026-01-05T09:30:00.125Z",
        "time_update": "2026-01-05T10:00:00Z",
        "type": 0,
        "magic": 42,
        "reason": 3,
        "volume": 0.5,
        "price_open": 1.0845,
        "sl": 1.08,
        "tp": 0.0,
        "price_current": 1.0861,
        "swap": -0.35,
        "profit": 80.0,
        "symbol": "EURUSD",
        "comment": "grid #3",
    }
    doc.update(kw)
    return doc


def deal_json(ticket: int = 5001, **kw: Any) -> dict[str, Any]:
    doc = {
        "ticket": ticket,
        "order": ticket + 100,
        "time": "2026-01-05T09:30:00.125Z",
        "type": 0,
        "entry": 0,
        "volume": 0.5,
        "price": 1.0845,
        "commission": -3.5,
        "swap": 0.0,
        "profit": 0.0,
        "fee": 0.0,
        "symbol": "EURUSD",
        "comment": "",
        "position_id": 1001,
        "magic": 42,
        "reason": 0,
    }
    doc.update(kw)
    return doc


def positions_answer(*positions: dict[str, Any], account: Any = ACCOUNT, **kw: Any) -> dict[str, Any]:
    doc = {"account_id": account, "timestamp": NOW_TEXT, "positions": list(positions)}
    doc.update(kw)
    return doc


def deals_answer(*deals: dict[str, Any], account: Any = ACCOUNT, **kw: Any) -> dict[str, Any]:
    doc = {
        "account_id": account,
        "from": "2026-01-01T00:00:00Z",
        "to": NOW_TEXT,
        "deals": list(deals),
    }
    doc.update(kw)
    return doc
