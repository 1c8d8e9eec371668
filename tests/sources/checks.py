"""What the parser promises of every position and deal it returns: each field inside its domain."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from agent.domain.trades import Deal, DealEntry, DealType, Position, PositionType
from agent.sources.bridge.parse import MIN_TIMESTAMP
from agent.sources.bridge.parse_trades import MAX_COMMENT, MAX_INT64, MAX_REASON, MAX_SYMBOL, MAX_VOLUME


def _check_common(x: Position | Deal, account: int, latest: datetime) -> None:
    assert x.account == account
    assert type(x.ticket) is int and 0 < x.ticket <= MAX_INT64
    assert type(x.magic) is int and 0 <= x.magic <= MAX_INT64
    assert type(x.reason) is int and 0 <= x.reason <= MAX_REASON
    assert type(x.volume) is float and 0 <= x.volume <= MAX_VOLUME
    assert x.time.tzinfo is UTC and MIN_TIMESTAMP <= x.time <= latest
    assert type(x.symbol) is str and len(x.symbol) <= MAX_SYMBOL and x.symbol.isprintable()
    assert type(x.comment) is str and len(x.comment) <= MAX_COMMENT and x.comment.isprintable()


def _money(*values: float) -> bool:
    return all(type(v) is float and math.isfinite(v) and abs(v) <= 1e15 for v in values)


def check_position(p: Position, account: int, latest: datetime) -> None:
    """Every field of `p` inside its domain (what the parser promises)."""
    _check_common(p, account, latest)
    assert type(p.identifier) is int and 0 < p.identifier <= MAX_INT64
    assert type(p.type) is PositionType and p.symbol.strip()
    assert p.time_update.tzinfo is UTC and MIN_TIMESTAMP <= p.time_update <= latest
    assert _money(p.price_open, p.sl, p.tp, p.price_current, p.swap, p.profit)


def check_deal(d: Deal, account: int, latest: datetime) -> None:
    """Every field of `d` inside its domain (what the parser promises)."""
    _check_common(d, account, latest)
    assert type(d.order) is int and 0 <= d.order <= MAX_INT64
    assert type(d.position_id) is int and 0 <= d.position_id <= MAX_INT64
    assert type(d.type) is DealType and type(d.entry) is DealEntry
    if d.is_trade:
        assert d.position_id > 0 and d.symbol.strip()
    assert _money(d.price, d.commission, d.swap, d.profit, d.fee)
    assert math.isfinite(d.result)
