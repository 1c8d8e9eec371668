"""Behavioural flags over an account's closed trades, each with the evidence (trade identifiers) that
raised it. Thresholds are the constants below; a flag is only judged with enough trades to say anything
(else `judged` is False and the reason says why)."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from agent.analytics.ledger import Trade
from agent.analytics.score import REVENGE_WINDOW, STOP_GRACE, StopChange

REVENGE_MIN = 2  # larger re-entries within REVENGE_WINDOW of a loss
MARTINGALE_FACTOR = 2.0  # the next entry after a loss at least this many times the losing volume...
MARTINGALE_MIN = 2  # ...this many times
HOLD_RATIO = 1.5  # losers held this much longer than winners on average
HOLD_MIN_EACH = 5  # winners and losers needed to compare
NO_STOP_SHARE = 0.2  # share of trades with no stop within STOP_GRACE of the open
NO_STOP_MIN_TRADES = 5
OVERTRADE_FACTOR = 2.0  # trades in a day above this many times the account's median trading day...
OVERTRADE_MIN_DAYS = 5  # ...with at least this many trading days as the baseline
OVERTRADE_MIN_TRADES = 3


@dataclass(frozen=True, slots=True)
class Flag:
    flag: str
    raised: bool
    judged: bool
    reason: str
    evidence: tuple[int, ...]  # trade identifiers


def _after_loss(trades: Sequence[Trade]) -> list[tuple[Trade, Trade]]:
    """(loss, next trade opened within REVENGE_WINDOW after the loss closed), by opening order."""
    by_open = sorted((t for t in trades if t.complete), key=lambda t: t.open_time)
    opened = [t.open_time for t in by_open]
    pairs = []
    for loss in trades:
        if loss.result >= 0 or loss.close_time is None:
            continue
        i = bisect_left(opened, loss.close_time)
        if i < len(by_open) and by_open[i].open_time - loss.close_time <= REVENGE_WINDOW:
            pairs.append((loss, by_open[i]))
    return pairs


def revenge_trading(trades: Sequence[Trade], after_loss: list[tuple[Trade, Trade]] | None = None) -> Flag:
    pairs = _after_loss(trades) if after_loss is None else after_loss
    hits = [(a, b) for a, b in pairs if b.max_volume > a.max_volume]
    evidence = tuple(i for a, b in hits for i in (a.identifier, b.identifier))
    raised = len(hits) >= REVENGE_MIN
    window = int(REVENGE_WINDOW.total_seconds() // 60)
    return Flag(
        "revenge_trading",
        raised,
        True,
        f"{len(hits)} larger entries within {window} min of a loss (raised from {REVENGE_MIN})",
        evidence,
    )


def martingale_sizing(trades: Sequence[Trade], after_loss: list[tuple[Trade, Trade]] | None = None) -> Flag:
    pairs = _after_loss(trades) if after_loss is None else after_loss
    hits = [(a, b) for a, b in pairs if b.max_volume >= MARTINGALE_FACTOR * a.max_volume]
    evidence = tuple(i for a, b in hits for i in (a.identifier, b.identifier))
    return Flag(
        "martingale_sizing",
        len(hits) >= MARTINGALE_MIN,
        True,
        f"{len(hits)} entries of >= {MARTINGALE_FACTOR:g}x the volume right after a loss "
        f"(raised from {MARTINGALE_MIN})",
        evidence,
    )


def holding_losers(trades: Sequence[Trade]) -> Flag:
    won = [t for t in trades if t.result > 0 and t.complete]
    lost = [t for t in trades if t.result < 0 and t.complete]
    if len(won) < HOLD_MIN_EACH or len(lost) < HOLD_MIN_EACH:
        return Flag(
            "holding_losers_longer",
            False,
            False,
            f"needs {HOLD_MIN_EACH} winners and {HOLD_MIN_EACH} losers",
            (),
        )
    win_mean = statistics.fmean([t.duration_seconds or 0.0 for t in won])
    loss_mean = statistics.fmean([t.duration_seconds or 0.0 for t in lost])
    raised = loss_mean > HOLD_RATIO * win_mean
    evidence = tuple(t.identifier for t in lost if (t.duration_seconds or 0.0) > win_mean) if raised else ()
    return Flag(
        "holding_losers_longer",
        raised,
        True,
        f"losers held {loss_mean:.0f} s on average, winners {win_mean:.0f} s (raised above {HOLD_RATIO:g}x)",
        evidence,
    )


class StopFacts:
    """Per trade: whether its stop-loss was ever seen, and whether none was set within STOP_GRACE of its
    open; kept between calls (a cache entry's), since a trade's answer changes only with its stop history
    (`forget` it then) or its open time (checked)."""

    def __init__(self, stops: dict[int, list[StopChange]]) -> None:
        self.stops = stops
        self._memo: dict[int, tuple[object, bool, bool]] = {}

    def of(self, t: Trade) -> tuple[bool, bool]:
        found = self._memo.get(t.identifier)
        if found is not None and found[0] == t.open_time:
            return found[1], found[2]
        history = self.stops.get(t.identifier, ())
        seen = any(s.sl is not None for s in history)
        bare = seen and not any(s.sl and s.time <= t.open_time + STOP_GRACE for s in history)
        self._memo[t.identifier] = (t.open_time, seen, bare)
        return seen, bare

    def forget(self, identifier: int) -> None:
        self._memo.pop(identifier, None)


def trading_without_stops(
    trades: Sequence[Trade], stops: dict[int, list[StopChange]], facts: StopFacts | None = None
) -> Flag:
    of = (facts if facts is not None and facts.stops is stops else StopFacts(stops)).of
    seen, bare = 0, []
    for t in trades:
        if t.complete and t.identifier in stops:
            was_seen, was_bare = of(t)
            if was_seen:
                seen += 1
                if was_bare:
                    bare.append(t.identifier)
    if seen < NO_STOP_MIN_TRADES:
        return Flag(
            "trading_without_stops",
            False,
            False,
            f"needs {NO_STOP_MIN_TRADES} trades whose stop-loss was seen (has {seen})",
            (),
        )
    share = len(bare) / seen
    return Flag(
        "trading_without_stops",
        share >= NO_STOP_SHARE,
        True,
        f"{len(bare)} of {seen} trades without a stop-loss at open (raised from {NO_STOP_SHARE:.0%})",
        tuple(bare),
    )


def over_trading(trades: Sequence[Trade], broker_utc_offset: timedelta = timedelta(0)) -> Flag:
    days: dict[object, list[int]] = {}
    for t in trades:
        if t.complete:
            days.setdefault((t.open_time + broker_utc_offset).date(), []).append(t.identifier)
    if len(days) < OVERTRADE_MIN_DAYS:
        return Flag(
            "over_trading",
            False,
            False,
            f"needs {OVERTRADE_MIN_DAYS} trading days as a baseline (has {len(days)})",
            (),
        )
    baseline = statistics.median(len(ids) for ids in days.values())
    limit = max(OVERTRADE_FACTOR * baseline, OVERTRADE_MIN_TRADES)
    heavy = sorted(day for day, ids in days.items() if len(ids) > limit)  # type: ignore[type-var]
    evidence = tuple(i for day in heavy for i in days[day])
    return Flag(
        "over_trading",
        bool(heavy),
        True,
        f"{len(heavy)} days with more than {limit:g} trades (the account's median day: {baseline:g})",
        evidence,
    )


def flags(
    trades: Sequence[Trade],
    stops: dict[int, list[StopChange]],
    broker_utc_offset: timedelta = timedelta(0),
    facts: StopFacts | None = None,
) -> tuple[Flag, ...]:
    """Every flag over `trades` (closed, in closing order); `facts`: kept per trade over `stops`."""
    after_loss = _after_loss(trades)
    return (
        revenge_trading(trades, after_loss),
        martingale_sizing(trades, after_loss),
        holding_losers(trades),
        trading_without_stops(trades, stops, facts),
        over_trading(trades, broker_utc_offset),
    )
