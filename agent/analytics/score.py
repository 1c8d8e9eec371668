"""The trade score (DESIGN.md section 12): 1-10 from explicit rules, per closed trade and live per open one.

`RULES` below is the whole of it: each rule's name, its maximum points and its check, which answers the
points earned, passed (None when the data to judge it is not kept: the rule is then left out of the
maximum) and a one-line reason. The score is 1 + 9 * earned / (the maximum of the rules that could be
judged), rounded half up; None when none could. The outcome (R-multiple: result over the money at risk
at open) is reported beside the score and never enters it.

What the checks read (`TradeFacts`), all from what the store keeps: the trade's deals (opening price and
volume, closing reasons, result), the balance before its opening deal (the ledger), its stop-loss and
take-profit history (TRADE_OPENED's sl/tp, then every TRADE_UPDATED sl_tp), the trades before it, and
for an open trade its live position and the account's margin level now. Not stored, so not judged for a
closed trade: the margin level right after its open (only the account's current one is kept).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import pairwise
from typing import Any

from agent.analytics.ledger import Ledger, Trade, volume_units
from agent.analytics.money import to_decimal, to_units
from agent.domain.trades import (
    Deal,
    DealEntry,
    DealReason,
    DealType,
    EventType,
    Position,
    PositionType,
    TradeEvent,
    UpdateChange,
)

STOP_GRACE = timedelta(seconds=60)  # "at or soon after open"
RISK_TIERS_PERCENT = (1.0, 2.0)  # of balance at open: <= 1 %: full points, <= 2 %: half
REWARD_RISK_TIERS = (2.0, 1.0)  # planned reward:risk >= 2: full points, >= 1: half
MARGIN_LEVEL_MIN_PERCENT = 300.0
REVENGE_WINDOW = timedelta(minutes=30)  # a larger entry this soon after a loss is a revenge entry


@dataclass(frozen=True, slots=True)
class StopChange:
    time: datetime
    sl: float | None  # 0.0: none (MT5's convention); None: not known
    tp: float | None


@dataclass(frozen=True, slots=True)
class TradeFacts:
    """What the rules judge one trade by (`facts_for_closed`, `facts_for_open` build it)."""

    identifier: int
    symbol: str
    side: PositionType | None
    open_time: datetime
    open_price: float | None
    volume: float | None  # the opening volume
    balance_at_open: Decimal | None
    stops: tuple[StopChange, ...]  # the SL/TP history, oldest first (empty: never seen)
    value_per_point: float | None  # account money per 1.0 of price per lot (estimated from its P&L)
    margin_level_after_open: float | None
    previous_loss: Trade | None  # the last losing trade closed within REVENGE_WINDOW before it opened
    closed: bool
    stopped_out: bool
    result: Decimal | None  # closed: its result; open: its floating P&L


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    points: int
    max_points: int
    passed: bool | None  # None: not judged (the data is not kept); left out of the maximum
    reason: str


@dataclass(frozen=True, slots=True)
class TradeScore:
    identifier: int
    score: int | None
    points: int  # earned over the rules that could be judged...
    max_points: int  # ...and their maximum (the table's total when all could)
    rules: tuple[RuleResult, ...]
    risk_percent: float | None
    r_multiple: float | None  # beside the score, never inside it
    undefined: dict[str, str] = field(default_factory=dict)


Verdict = tuple[int, bool | None, str]


def _stop_at_open(f: TradeFacts) -> StopChange | None:
    """The first stop-loss set within STOP_GRACE of the open (None: none in time, or never seen)."""
    for s in f.stops:
        if s.time > f.open_time + STOP_GRACE:
            break
        if s.sl:
            return s
    return None


def _risk_money(f: TradeFacts) -> float | None:
    stop = _stop_at_open(f)
    if stop is None or stop.sl is None or f.open_price is None or f.volume is None or not f.value_per_point:
        return None
    return abs(f.open_price - stop.sl) * f.volume * f.value_per_point


def check_stop_loss_set(f: TradeFacts) -> Verdict:
    if not f.stops or all(s.sl is None for s in f.stops):
        return 0, None, "its stop-loss was never seen (opened and closed between two polls)"
    stop = _stop_at_open(f)
    if stop is None:
        return 0, False, f"no stop-loss within {STOP_GRACE.seconds} s of the open"
    return (
        2,
        True,
        f"stop-loss {stop.sl} set {max(0, int((stop.time - f.open_time).total_seconds()))} s after open",
    )


def check_risk_at_open(f: TradeFacts) -> Verdict:
    verdict = check_stop_loss_set(f)
    if verdict[1] is None:
        return 0, None, verdict[2]
    if verdict[1] is False:
        return 0, False, "no stop-loss at open: the risk is unbounded"
    risk = _risk_money(f)
    if risk is None or f.balance_at_open is None or f.balance_at_open <= 0:
        return 0, None, "the money at risk or the balance at open is not known"
    pct = round(risk / float(f.balance_at_open) * 100, 9)  # prices are floats: 1.1 - 1.095 is 0.0050000001
    low, high = RISK_TIERS_PERCENT
    if pct <= low:
        return 2, True, f"risk {pct:.2f} % of balance (<= {low:g} %)"
    if pct <= high:
        return 1, True, f"risk {pct:.2f} % of balance (<= {high:g} %, above {low:g} %)"
    return 0, False, f"risk {pct:.2f} % of balance (above {high:g} %)"


def check_reward_risk(f: TradeFacts) -> Verdict:
    stop = _stop_at_open(f)
    if stop is None or f.open_price is None:
        verdict = check_stop_loss_set(f)
        return 0, None if verdict[1] is None else False, "no stop-loss at open: no planned reward:risk"
    if not stop.tp:
        return 0, False, "no take-profit at open: no planned reward"
    assert stop.sl is not None
    rr = abs(stop.tp - f.open_price) / abs(f.open_price - stop.sl) if f.open_price != stop.sl else None
    if rr is None:
        return 0, False, "stop-loss at the open price"
    rr = round(rr, 9)
    full, half = REWARD_RISK_TIERS
    if rr >= full:
        return 2, True, f"planned reward:risk {rr:.2f} (>= {full:g})"
    if rr >= half:
        return 1, True, f"planned reward:risk {rr:.2f} (>= {half:g}, below {full:g})"
    return 0, False, f"planned reward:risk {rr:.2f} (below {half:g})"


def check_stop_never_widened(f: TradeFacts) -> Verdict:
    known = [s for s in f.stops if s.sl is not None]
    if not known:
        return 0, None, "its stop-loss was never seen"
    for before, after in pairwise(known):
        old, new = before.sl or 0.0, after.sl or 0.0
        if old and (not new or (new < old if f.side is PositionType.BUY else new > old)):
            return (
                0,
                False,
                f"stop moved away from price: {old} -> {new or 'none'} at {after.time.isoformat()}",
            )
    return 1, True, "stop never moved away from price"


def check_margin_level(f: TradeFacts) -> Verdict:
    if f.margin_level_after_open is None:
        return 0, None, "the margin level after its open is not recorded"
    level = f.margin_level_after_open
    if level >= MARGIN_LEVEL_MIN_PERCENT:
        return 1, True, f"margin level {level:.0f} % (>= {MARGIN_LEVEL_MIN_PERCENT:g} %)"
    return 0, False, f"margin level {level:.0f} % (below {MARGIN_LEVEL_MIN_PERCENT:g} %)"


def check_no_revenge(f: TradeFacts) -> Verdict:
    loss = f.previous_loss
    if loss is None:
        return 1, True, f"no loss closed in the {int(REVENGE_WINDOW.total_seconds() // 60)} min before it"
    if f.volume is None:
        return 0, None, "its opening volume is not known"
    before = loss.max_volume / 100_000_000
    if f.volume > before:
        return 0, False, f"larger entry ({f.volume:g} > {before:g} lots) soon after loss on {loss.identifier}"
    return 1, True, f"no larger entry after the loss on {loss.identifier}"


def check_not_stopped_out(f: TradeFacts) -> Verdict:
    if not f.closed:
        return 0, None, "still open"
    if f.stopped_out:
        return 0, False, "closed by a stop-out"
    return 1, True, "not closed by a stop-out"


# The rules and their weights: name, max points, check. Tiers and thresholds are the constants above.
RULES: tuple[tuple[str, int, Callable[[TradeFacts], Verdict]], ...] = (
    ("stop_loss_set", 2, check_stop_loss_set),  # SL at or within 60 s of the open
    ("risk_at_open", 2, check_risk_at_open),  # SL distance x volume, % of balance: <=1 %: 2, <=2 %: 1
    ("reward_risk", 2, check_reward_risk),  # |TP - open| / |open - SL| at open: >=2: 2, >=1: 1
    ("stop_never_widened", 1, check_stop_never_widened),  # SL never moved away from price nor removed
    ("margin_level_after_open", 1, check_margin_level),  # >= 300 %
    ("no_revenge_entry", 1, check_no_revenge),  # no larger entry within 30 min of a loss
    ("not_stopped_out", 1, check_not_stopped_out),
)


def score(f: TradeFacts, only: Sequence[str] | None = None) -> TradeScore:
    """`only`: the names of the rules to judge (default: every rule of the table)."""
    results = []
    for name, max_points, check in RULES:
        if only is not None and name not in only:
            continue
        points, passed, reason = check(f)
        results.append(RuleResult(name, min(points, max_points), max_points, passed, reason))
    judged = sum(r.max_points for r in results if r.passed is not None)
    earned = sum(r.points for r in results if r.passed is not None)
    undefined: dict[str, str] = {}
    value: int | None = None
    if judged:
        exact = 1 + Fraction(9 * earned, judged)
        value = int(Decimal(exact.numerator / exact.denominator).quantize(Decimal(1), ROUND_HALF_UP))
    else:
        undefined["score"] = "no_rule_could_be_judged"
    risk = _risk_money(f)
    risk_pct = r_multiple = None
    if risk is None or f.balance_at_open is None or f.balance_at_open <= 0:
        undefined["risk_percent"] = "risk_not_known"
    else:
        risk_pct = risk / float(f.balance_at_open) * 100
    if risk is None or risk == 0 or f.result is None:
        undefined["r_multiple"] = "risk_not_known"
    else:
        r_multiple = float(f.result) / risk
    return TradeScore(f.identifier, value, earned, judged, tuple(results), risk_pct, r_multiple, undefined)


# --- facts from what the store keeps --------------------------------------------------------------


def stop_histories(events: Iterable[TradeEvent]) -> dict[int, list[StopChange]]:
    """Each trade's SL/TP history from its TRADE_OPENED (sl/tp, None when only its deal was seen) and its
    TRADE_UPDATED sl_tp events, oldest first."""
    out: dict[int, list[StopChange]] = {}
    for e in sorted(events, key=lambda e: (e.time, e.id or 0)):
        change = stop_change(e)
        if change is not None:
            out.setdefault(e.identifier, []).append(change)
    return out


def stop_change(e: TradeEvent) -> StopChange | None:
    """The SL/TP an event sets (TRADE_OPENED, TRADE_UPDATED sl_tp); None for any other event."""
    data: dict[str, Any] = dict(e.data)
    if e.type is EventType.TRADE_OPENED or (
        e.type is EventType.TRADE_UPDATED and data.get("change") == UpdateChange.SL_TP.value
    ):
        return StopChange(e.time, _num(data.get("sl")), _num(data.get("tp")))
    return None


def _num(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _value_per_point(trade: Trade) -> float | None:
    """Money per 1.0 of price per lot, from its closing deals' profit over their price moves."""
    opening = next((d for d in trade.deals if d.entry is DealEntry.IN), None)
    if opening is None or trade.side is None:
        return None
    sign = 1.0 if trade.side is PositionType.BUY else -1.0
    moved = profit = 0.0
    for d in trade.deals:
        if d.entry in (DealEntry.OUT, DealEntry.OUT_BY):
            moved += sign * (d.price - opening.price) * d.volume
            profit += d.profit
    return abs(profit / moved) if moved else None


def balance_before(ledger: Ledger, when: datetime) -> Decimal | None:
    """The ledger's balance before the first deal at or after `when`."""
    i = bisect_left(ledger.times, when)
    return to_decimal(ledger.balances[i - 1] if i else ledger.opening_balance)


def _previous_loss(ledger: Ledger, opened: datetime, identifier: int) -> Trade | None:
    """The last losing trade closed at or before `opened`, within REVENGE_WINDOW of it."""
    i = bisect_right(ledger.close_times, opened)
    while i > 0:
        i -= 1
        t = ledger.closed[i]
        if opened - ledger.close_times[i] > REVENGE_WINDOW:
            return None
        if t.identifier != identifier and t.result < 0:
            return t
    return None


def facts_for_closed(trade: Trade, ledger: Ledger, stops: Sequence[StopChange]) -> TradeFacts:
    opening = next((d for d in trade.deals if d.entry is DealEntry.IN), None)
    return facts_for_trade(
        trade,
        stops,
        balance_at_open=balance_before(ledger, trade.open_time) if opening else None,
        margin_level_after_open=None,
        previous_loss=_previous_loss(ledger, trade.open_time, trade.identifier),
    )


def facts_for_trade(
    trade: Trade,
    stops: Sequence[StopChange],
    *,
    balance_at_open: Decimal | None,
    margin_level_after_open: float | None,
    previous_loss: Trade | None,
) -> TradeFacts:
    """A trade from its deals, with what a caller knows beside them (a ledger's balance, or the event
    detector's account values remembered at the open)."""
    opening = next((d for d in trade.deals if d.entry is DealEntry.IN), None)
    closing = [d for d in trade.deals if d.entry is not DealEntry.IN]
    return TradeFacts(
        identifier=trade.identifier,
        symbol=trade.symbol,
        side=trade.side,
        open_time=trade.open_time,
        open_price=opening.price if opening else None,
        volume=opening.volume if opening else None,
        balance_at_open=balance_at_open if opening else None,
        stops=tuple(stops),
        value_per_point=_value_per_point(trade),
        margin_level_after_open=margin_level_after_open,
        previous_loss=previous_loss,
        closed=trade.closed,
        stopped_out=any(d.reason == DealReason.SO for d in closing),
        result=to_decimal(trade.result) if trade.closed else None,
    )


def facts_for_open(
    position: Position, ledger: Ledger, stops: Sequence[StopChange], margin_level: float | None
) -> TradeFacts:
    """A live position: its stops so far (the snapshot's own sl/tp last), the account's margin level now."""
    return facts_for_position(
        position,
        stops,
        balance_at_open=balance_before(ledger, position.time),
        margin_level=margin_level,
        previous_loss=_previous_loss(ledger, position.time, position.identifier),
    )


def facts_for_position(
    position: Position,
    stops: Sequence[StopChange],
    *,
    balance_at_open: Decimal | None,
    margin_level: float | None,
    previous_loss: Trade | None,
) -> TradeFacts:
    """A live position with what a caller knows beside it (see `facts_for_open`)."""
    sign = 1.0 if position.type is PositionType.BUY else -1.0
    moved = sign * (position.price_current - position.price_open) * position.volume
    history = list(stops)
    last = history[-1] if history else None
    if last is None or (last.sl, last.tp) != (position.sl, position.tp):
        history.append(StopChange(max(position.time_update, position.time), position.sl, position.tp))
    return TradeFacts(
        identifier=position.identifier,
        symbol=position.symbol,
        side=position.type,
        open_time=position.time,
        open_price=position.price_open,
        volume=position.volume,
        balance_at_open=balance_at_open,
        stops=tuple(history),
        value_per_point=abs(position.profit / moved) if moved else None,
        margin_level_after_open=margin_level,
        previous_loss=previous_loss,
        closed=False,
        stopped_out=False,
        result=Decimal(repr(position.profit)),
    )


def trade_of(deals: Sequence[Deal], closed: bool) -> Trade | None:
    """One position's trade from its own deals alone (no ledger: the event detector holds them), in
    (time, ticket) order; None without a trade deal. Its side is the opening deal's, None (and
    `complete` False) when the position's IN deal is not among them."""
    ordered = sorted(map(_enums, (d for d in deals if d.is_trade)), key=lambda d: (d.time, d.ticket))
    if not ordered:
        return None
    first = ordered[0]
    opening = first.entry is DealEntry.IN
    side = (PositionType.BUY if first.type is DealType.BUY else PositionType.SELL) if opening else None
    trade = Trade(first.position_id, first.symbol, side, first.time, complete=opening, deals=list(ordered))
    for d in ordered:
        trade.profit += to_units(d.profit)
        trade.commission += to_units(d.commission)
        trade.swap += to_units(d.swap)
        trade.fee += to_units(d.fee)
        volume = volume_units(d.volume)
        if d.entry is DealEntry.IN:
            trade.open_volume += volume
        elif d.entry is DealEntry.INOUT:
            trade.open_volume = volume - trade.open_volume
        else:
            trade.open_volume -= volume
        trade.max_volume = max(trade.max_volume, trade.open_volume)
    trade.result = trade.profit + trade.commission + trade.swap + trade.fee
    if closed:
        trade.close_time, trade.close_reason = ordered[-1].time, ordered[-1].reason
    return trade


def _enums(d: Deal) -> Deal:
    """The deal with its entry and type as enums (a source may give plain ints; the checks compare by
    identity)."""
    if type(d.entry) is DealEntry and type(d.type) is DealType:
        return d
    return replace(d, entry=DealEntry(int(d.entry)), type=DealType(int(d.type)))


def latest_loss(losses: Sequence[Trade], opened: datetime, identifier: int) -> Trade | None:
    """`_previous_loss` over a list of losing closed trades in closing order (the event detector's)."""
    for t in reversed(losses):
        if t.close_time is None or t.close_time > opened or t.identifier == identifier:
            continue
        return t if opened - t.close_time <= REVENGE_WINDOW else None
    return None


# --- the score as event payload (TRADE_OPENED: live, TRADE_CLOSED: final) ----------------------------

AT_OPEN = ("stop_loss_set", "risk_at_open", "reward_risk", "margin_level_after_open", "no_revenge_entry")


def score_at_open(f: TradeFacts) -> TradeScore:
    """The live score of a trade just opened: only the rules that can be judged at its open."""
    return score(f, only=AT_OPEN)


def rule_json(r: RuleResult) -> dict[str, Any]:
    """One judged rule as every answer and event shows it (an allow-list of its fields)."""
    fields = ("rule", "points", "max_points", "passed", "reason")
    return {f: getattr(r, f) for f in fields}


def score_json(s: TradeScore) -> dict[str, Any]:
    """`{"score", "rules": [{rule, points, max_points, passed, reason}], "complete"}`: complete when every
    rule of the whole table was judged (a final score with nothing left out)."""
    return {
        "score": s.score,
        "rules": [rule_json(r) for r in s.rules],
        "complete": len(s.rules) == len(RULES) and all(r.passed is not None for r in s.rules),
    }


def r_multiple_reason(f: TradeFacts, s: TradeScore) -> str | None:
    """Why the R-multiple is null (None: it is not)."""
    if s.r_multiple is not None:
        return None
    if _stop_at_open(f) is None:
        return "no_initial_stop_loss"
    return "risk_not_known"
