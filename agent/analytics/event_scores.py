"""The final score a TRADE_CLOSED event carries (agent.events.detector), read back for the analytics.

The detector judges each closed trade by the same RULES table with more facts than the store keeps: the
margin level right after the open and the SL/TP it sighted in a positions snapshot (a TRADE_OPENED
detected from its deal alone has `sl: null`, and the first snapshot after it creates no event when the
SL was already there). So where an event carries a final score, the analytics report that one; they
recompute only trades without one (closed before events had scores, or whose event was pruned).

The event's data is stored JSON: every value is checked here (a rule the table does not name, a points
value out of bounds, a non-finite R-multiple: the payload is not used and the trade is recomputed).
"""

from __future__ import annotations

import math
from typing import Any

from agent.analytics.score import RULES, RuleResult, TradeScore

_MAX_POINTS = {name: max_points for name, max_points, _ in RULES}
REASON_MAX = 500


def _int(v: object) -> int | None:
    return v if type(v) is int else None


def _rule(item: object) -> RuleResult | None:
    if type(item) is not dict:
        return None
    name, points, max_points = item.get("rule"), _int(item.get("points")), _int(item.get("max_points"))
    passed, reason = item.get("passed"), item.get("reason")
    if type(name) is not str or name not in _MAX_POINTS or max_points != _MAX_POINTS[name]:
        return None
    if points is None or not 0 <= points <= max_points or passed not in (True, False, None):
        return None
    if type(reason) is not str or len(reason) > REASON_MAX:
        return None
    return RuleResult(name, points, max_points, passed, reason)


def score_from_event(identifier: int, data: dict[str, Any]) -> TradeScore | None:
    """The final score of a TRADE_CLOSED's `data` (None: none, an unscored one, or not valid). Its
    points and maximum are those of the rules it judged; `risk_percent` is left to the caller (the
    event does not carry it)."""
    body = data.get("score")
    if type(body) is not dict:
        return None
    value, items = body.get("score"), body.get("rules")
    if type(value) is not int or not 1 <= value <= 10 or type(items) is not list:
        return None
    rules = [_rule(item) for item in items]
    names = [r.rule for r in rules if r is not None]
    if not rules or None in rules or len(set(names)) != len(names):
        return None
    judged = [r for r in rules if r is not None and r.passed is not None]
    r_multiple = data.get("r_multiple")
    undefined: dict[str, str] = {}
    if r_multiple is None:
        reason = data.get("r_multiple_reason")
        undefined["r_multiple"] = reason if type(reason) is str and len(reason) <= 64 else "risk_not_known"
    elif type(r_multiple) not in (int, float) or not math.isfinite(r_multiple):
        return None
    return TradeScore(
        identifier,
        value,
        sum(r.points for r in judged),
        sum(r.max_points for r in judged),
        tuple(r for r in rules if r is not None),
        None,
        None if r_multiple is None else float(r_multiple),
        undefined,
    )
