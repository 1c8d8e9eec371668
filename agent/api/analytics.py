"""Trade analytics (DESIGN.md section 12): `GET /api/v1/accounts/{account}/analytics?from=&to=`.

Same access as positions: a read or admin token sees every account, a client JWT only its own (another
client's account answers 403, an unknown one 404). Computed on each call from the stored deals (the
terminal's, which stay the source of truth: nothing computed here is ever written back), the stored
TRADE_OPENED / TRADE_UPDATED events (stop-loss history, for the scores), the last positions snapshot
(live scores), the account's synced values (balance anchor, margin level now) and its recorded equity in
the range (drawdown from equity, agent.analytics.equity). The ledger of each
recently asked account is kept (agent.analytics.cache) and fed only the deals stored since, so an account
with 100,000 deals is read once, not on every call. Every key of the
answer is listed in the models below; a figure that cannot be computed is null and named in `undefined`
with the reason (never 0, never NaN).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from aiohttp import web
from pydantic import Field

from agent.analytics import Analytics, DayFigures, Ledger, Trade, compute
from agent.analytics.behaviour import Flag, StopFacts, flags
from agent.analytics.cache import TAILED, CachedLedger, LedgerCache, refresh, tail_events
from agent.analytics.money import to_decimal, to_units
from agent.analytics.score import (
    StopChange,
    TradeScore,
    balance_before,
    facts_for_closed,
    facts_for_open,
    rule_json,
    score,
)
from agent.analytics.stats import TimedEquity
from agent.api.admin import SYNC_SERVICES
from agent.api.auth import require_read
from agent.api.common import (
    ACCOUNT_PARAM,
    accounts,
    from_store,
    now,
    parse_account,
    parse_int,
    query_one,
    settings,
)
from agent.api.common import store as store_of
from agent.api.errors import ApiError
from agent.api.keys import SYNC
from agent.api.schema import Schema
from agent.api.serialize import iso
from agent.api.spec import Operation, Param, documented
from agent.domain.accounts import AccountValues
from agent.domain.trades import Deal, DealType, PositionsSnapshot, PositionType, TradeEvent
from agent.store import Store

routes = web.RouteTableDef()

RANGE_DEFAULT = timedelta(days=30)
RANGE_MAX = timedelta(days=366)
OFFSET_MAX_MINUTES = 14 * 60
SCORED_CLOSED_MAX = 100  # the newest closed trades of the range get their score in the answer
EVENTS_PAGE = 5000


class Day(Schema):
    date: dt.date = Field(
        description="the broker day (the terminal's UTC offset: `broker_utc_offset_minutes`)"
    )
    date_utc: datetime = Field(description="when that broker day starts, in UTC")
    profit: float = Field(description="results of the trades closed that day")
    balance: float = Field(description="the balance after that day's last deal")
    trades: int


class DayUtc(Schema):
    date: dt.date
    profit: float
    balance: float
    trades: int


class RuleBody(Schema):
    rule: str
    points: int
    max_points: int
    passed: bool | None = Field(
        description="null: not judged (the data is not kept); left out of the maximum"
    )
    reason: str


class ScoreBody(Schema):
    identifier: int
    symbol: str
    side: str | None = Field(
        description="buy or sell (the opening side); null when its opening deal is missing"
    )
    open_time: datetime
    close_time: datetime | None
    result: float | None = Field(description="closed: its result; open: its floating P&L")
    score: int | None = Field(
        description="1-10: 1 + 9 * points / max_points; null when no rule could be judged"
    )
    points: int
    max_points: int = Field(description="the maximum of the rules that could be judged")
    rules: list[RuleBody]
    risk_percent: float | None = Field(description="money at risk at open (stop-loss) in % of balance")
    r_multiple: float | None = Field(description="the outcome in units of risk: beside the score, not in it")
    score_source: str = Field(
        description="detector: the final score its TRADE_CLOSED event carries (judged at detection, with "
        "the margin level after the open and the SL/TP it sighted); analytics: judged here from the store"
    )
    undefined: dict[str, str]


class FlagBody(Schema):
    flag: str
    raised: bool
    judged: bool = Field(description="false: too little history to say")
    reason: str
    evidence: list[int] = Field(description="the trades (identifiers) that raised it")


class AnalyticsBody(Schema):
    account: int
    from_: datetime = Field(alias="from")
    to: datetime
    broker_utc_offset_minutes: int = Field(description="the offset the broker days were computed with")
    broker_utc_offset_source: str = Field(
        description="query: the `broker_utc_offset_minutes` parameter; terminal: the account's terminal's "
        "offset, learned from its source; unknown: neither (0: broker days are UTC days)"
    )
    balance_anchor: str = Field(
        description="first_deposit: the stored deals start with the account's first deposit; synced_balance: "
        "the synced balance minus the stored deals' results; none: neither is known (balances from 0)"
    )
    trades: int
    won_trades: int
    lost_trades: int
    breakeven_trades: int
    won_trades_percent: float | None
    lost_trades_percent: float | None
    breakeven_trades_percent: float | None
    profit: float
    gross_profit: float
    gross_loss: float
    profit_factor: float | None = Field(description="null with profit_factor_infinite true: no losing trades")
    profit_factor_infinite: bool
    expectancy: float | None = Field(description="the mean result per trade")
    average_win: float | None
    average_loss: float | None = Field(description="negative")
    best_trade: float | None
    worst_trade: float | None
    max_drawdown_balance_percent: float | None
    max_drawdown_equity_percent: float | None = Field(
        description="largest peak-to-trough fall of the recorded equity points in the range (balance "
        "operations taken out), in %; sampled: a trough shorter than a sync is not seen; null with fewer "
        "than 2 points"
    )
    longest_win_streak: int
    longest_loss_streak: int
    average_trade_length_seconds: float | None
    long_trades: int
    short_trades: int
    long_won_trades_percent: float | None
    short_won_trades_percent: float | None
    commissions: float
    swaps: float
    fees: float
    deposits: float
    withdrawals: float
    other_balance_operations: float
    sharpe_ratio: float | None = Field(
        description="per-trade returns, risk-free 0, not annualised; >= 30 trades"
    )
    sortino_ratio: float | None
    daily: list[Day]
    daily_utc: list[DayUtc]
    undefined: dict[str, str] = Field(description="each null figure and why")
    incomplete_trades: list[int] = Field(description="trades whose opening deal is not stored")
    behaviour: list[FlagBody]
    scores: list[ScoreBody] = Field(description=f"the newest {SCORED_CLOSED_MAX} closed trades of the range")
    scores_truncated: bool
    open_scores: list[ScoreBody] = Field(description="live, per open position")


def _num(v: Decimal | Fraction | None) -> float | None:
    return None if v is None else float(v)


def _day(d: DayFigures) -> dict[str, Any]:
    return {
        "date": d.date.isoformat(),
        "date_utc": iso(d.start_utc),
        "profit": float(d.profit),
        "balance": float(d.balance),
        "trades": d.trades,
    }


def _side(side: PositionType | None) -> str | None:
    return None if side is None else "buy" if side is PositionType.BUY else "sell"


def _score_json(
    s: TradeScore,
    symbol: str,
    side: PositionType | None,
    opened: datetime,
    closed: datetime | None,
    result: Decimal | None,
    source: str = "analytics",
) -> dict[str, Any]:
    return {
        "identifier": s.identifier,
        "symbol": symbol,
        "side": _side(side),
        "open_time": iso(opened),
        "close_time": iso(closed),
        "result": _num(result),
        "score": s.score,
        "points": s.points,
        "max_points": s.max_points,
        "rules": [rule_json(r) for r in s.rules],
        "risk_percent": s.risk_percent,
        "r_multiple": s.r_multiple,
        "score_source": source,
        "undefined": dict(s.undefined),
    }


def _flag_json(f: Flag) -> dict[str, Any]:
    return {
        "flag": f.flag,
        "raised": f.raised,
        "judged": f.judged,
        "reason": f.reason,
        "evidence": list(f.evidence),
    }


def analytics_json(a: Analytics) -> dict[str, Any]:
    """The figures of `a`, each key an allow-listed field of AnalyticsBody."""
    return {
        "trades": a.trades,
        "won_trades": a.won_trades,
        "lost_trades": a.lost_trades,
        "breakeven_trades": a.breakeven_trades,
        "won_trades_percent": _num(a.won_trades_percent),
        "lost_trades_percent": _num(a.lost_trades_percent),
        "breakeven_trades_percent": _num(a.breakeven_trades_percent),
        "profit": float(a.profit),
        "gross_profit": float(a.gross_profit),
        "gross_loss": float(a.gross_loss),
        "profit_factor": _num(a.profit_factor),
        "profit_factor_infinite": a.profit_factor_infinite,
        "expectancy": _num(a.expectancy),
        "average_win": _num(a.average_win),
        "average_loss": _num(a.average_loss),
        "best_trade": _num(a.best_trade),
        "worst_trade": _num(a.worst_trade),
        "max_drawdown_balance_percent": a.max_drawdown_balance_percent,
        "max_drawdown_equity_percent": a.max_drawdown_equity_percent,
        "longest_win_streak": a.longest_win_streak,
        "longest_loss_streak": a.longest_loss_streak,
        "average_trade_length_seconds": a.average_trade_length_seconds,
        "long_trades": a.long_trades,
        "short_trades": a.short_trades,
        "long_won_trades_percent": _num(a.long_won_trades_percent),
        "short_won_trades_percent": _num(a.short_won_trades_percent),
        "commissions": float(a.commissions),
        "swaps": float(a.swaps),
        "fees": float(a.fees),
        "deposits": float(a.deposits),
        "withdrawals": float(a.withdrawals),
        "other_balance_operations": float(a.other_balance_operations),
        "sharpe_ratio": a.sharpe_ratio,
        "sortino_ratio": a.sortino_ratio,
        "daily": [_day(d) for d in a.daily],
        "daily_utc": [{k: v for k, v in _day(d).items() if k != "date_utc"} for d in a.daily_utc],
        "undefined": dict(a.undefined),
        "incomplete_trades": list(a.incomplete_trades),
    }


def anchor(ledger: Ledger, first: Deal | None, synced: float | None) -> tuple[int | Decimal, str]:
    """The balance before the first stored deal, and where it comes from (see `balance_anchor`)."""
    if first is not None and first.type is DealType.BALANCE and first.profit > 0:
        return 0, "first_deposit"
    if synced is not None:
        return to_units(synced) - (ledger.balance - ledger.opening_balance), "synced_balance"
    return 0, "none"


def build_body(
    *,
    account: int,
    start: datetime,
    end: datetime,
    offset: timedelta,
    ledger: Ledger,
    first: Deal | None,
    stops: dict[int, list[StopChange]],
    snapshot: PositionsSnapshot | None,
    synced_balance: float | None,
    margin_level: float | None,
    equity: Sequence[TimedEquity] = (),
    final_scores: Callable[[int], TradeScore | None] | None = None,
    offset_source: str = "query",
    flags_cache: Callable[[Any, Callable[[], tuple[Flag, ...]]], tuple[Flag, ...]] | None = None,
    stop_facts: StopFacts | None = None,
) -> dict[str, Any]:
    """The whole answer from a ledger of every stored deal (pure: the handler reads, this computes, the
    bench times it). Rebases the ledger on the anchor: hold its lock. `final_scores(identifier)`: the
    score a trade's TRADE_CLOSED carries (None: judge it here); `flags_cache(key, compute)`: the flags
    kept per key (the caller's cache adds what `key` leaves out: the ledger's build and the stops'
    version); `stop_facts`: each trade's stop facts for the flags, kept over `stops`."""
    opening, anchor_kind = anchor(ledger, first, synced_balance)
    ledger.rebase(opening)
    a = compute(ledger, start=start, end=end, broker_utc_offset=offset, equity=equity)
    lo, hi = bisect_left(ledger.close_times, start), bisect_left(ledger.close_times, end)
    in_range = ledger.closed[lo:hi]
    scored: list[Trade] = in_range[-SCORED_CLOSED_MAX:]
    scores = []
    for t in reversed(scored):
        s = score(facts_for_closed(t, ledger, stops.get(t.identifier, ())))
        final = final_scores(t.identifier) if final_scores is not None else None
        if final is not None:
            s = _with_risk(final, s, t, ledger)
        result = to_decimal(t.result)
        source = "analytics" if final is None else "detector"
        scores.append(_score_json(s, t.symbol, t.side, t.open_time, t.close_time, result, source))

    def all_flags() -> tuple[Flag, ...]:
        return flags(in_range, stops, offset, stop_facts)

    # the flags read the range's trades and the offset (and the stops: the cache's own key adds them)
    key = (lo, hi, len(ledger.closed), offset)
    behaviour = flags_cache(key, all_flags) if flags_cache is not None else all_flags()
    open_scores = []
    for p in snapshot.positions if snapshot is not None else ():
        s = score(facts_for_open(p, ledger, stops.get(p.identifier, ()), margin_level))
        open_scores.append(_score_json(s, p.symbol, p.type, p.time, None, Decimal(repr(p.profit))))
    return {
        "account": account,
        "from": iso(start),
        "to": iso(end),
        "broker_utc_offset_minutes": int(offset.total_seconds() // 60),
        "broker_utc_offset_source": offset_source,
        "balance_anchor": anchor_kind,
        **analytics_json(a),
        "behaviour": [_flag_json(f) for f in behaviour],
        "scores": scores,
        "scores_truncated": len(in_range) > len(scored),
        "open_scores": open_scores,
    }


def _with_risk(final: TradeScore, computed: TradeScore, t: Trade, ledger: Ledger) -> TradeScore:
    """The event's score with a risk in % of balance: the one its R-multiple implies (the detector's
    money at risk: result / R) over the balance before the open, else the one computed here."""
    risk_pct = computed.risk_percent
    if final.r_multiple and t.result and t.complete:
        balance = balance_before(ledger, t.open_time)
        if balance is not None and balance > 0:
            risk_pct = abs(float(to_decimal(t.result)) / final.r_multiple) / float(balance) * 100
    undefined = {k: v for k, v in final.undefined.items()}
    if risk_pct is None:
        undefined["risk_percent"] = "risk_not_known"
    return replace(final, risk_percent=risk_pct, undefined=undefined)


def ledger_of(deals: list[Deal]) -> Ledger:
    ledger = Ledger()
    ledger.add(deals)
    return ledger


_CACHES: weakref.WeakKeyDictionary[web.Application, LedgerCache] = weakref.WeakKeyDictionary()


def cache_of(app: web.Application) -> LedgerCache:
    """The app's ledgers (one cache per application, gone with it)."""
    found = _CACHES.get(app)
    if found is None:
        found = _CACHES[app] = LedgerCache()
    return found


def parse_offset(text: str | None) -> timedelta:
    """Whole minutes in [-14 h, +14 h]; None: 0."""
    if text is None:
        return timedelta(0)
    sign = -1 if text.startswith("-") else 1
    name, limit = "broker_utc_offset_minutes", OFFSET_MAX_MINUTES
    try:
        minutes = parse_int(text.removeprefix("-"), name, minimum=0, maximum=limit)
    except ApiError:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be an integer from {-limit} to {limit}"
        ) from None
    return timedelta(minutes=sign * minutes)


def _sources(request: web.Request) -> list[Any]:
    return [s.source for s in request.app.get(SYNC_SERVICES) or [request.app[SYNC]]]


def learned_offset(sources: Sequence[Any], account: int, holder: str | None) -> timedelta | None:
    """The account's broker UTC offset as its source learned it (a bridge source: its terminal's, from
    the bridge's health document; a MetaAPI source: from its items' `brokerTime`), the holding source's
    first; None: no source knows it."""
    ordered = sorted(sources, key=lambda s: getattr(s, "name", None) != holder)
    for source in ordered:
        offsets = getattr(source, "broker_utc_offsets", None)  # a sharded source forwards it
        if isinstance(offsets, Mapping):
            minutes = offsets.get(account)
            if type(minutes) is int and abs(minutes) <= OFFSET_MAX_MINUTES:
                return timedelta(minutes=minutes)
    return None


def parse_time(text: str, name: str) -> datetime:
    """ISO-8601 with a UTC offset (a naive time would be read in nobody knows which zone)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(
            400, "invalid_parameter", f"{name} must be an ISO-8601 time with a UTC offset"
        ) from None
    if value.tzinfo is None:
        raise ApiError(400, "invalid_parameter", f"{name} has no UTC offset (e.g. 2026-03-01T00:00:00Z)")
    return value.astimezone(UTC)


FROM_PARAM = Param(
    "from",
    "query",
    {"type": "string", "format": "date-time"},
    description=f"start (inclusive, with a UTC offset); default: `to` minus {RANGE_DEFAULT.days} days",
)
TO_PARAM = Param(
    "to",
    "query",
    {"type": "string", "format": "date-time"},
    description="end (exclusive, with a UTC offset); default: now",
)
OFFSET_PARAM = Param(
    "broker_utc_offset_minutes",
    "query",
    {"type": "integer", "minimum": -OFFSET_MAX_MINUTES, "maximum": OFFSET_MAX_MINUTES},
    description="the terminal's UTC offset, for broker days (default: the offset the account's source "
    "reports for its terminal, `broker_utc_offset_source` terminal; 0 when none does, unknown)",
)


async def answer(
    backend: Store,
    entry: CachedLedger,
    *,
    account: int,
    start: datetime,
    end: datetime,
    offset: timedelta,
    offset_source: str,
    values: AccountValues | None,
) -> dict[str, Any]:
    """The answer for one account from the store and its cache entry: the deals and events stored since
    the entry last looked (tailed), the positions and the equity points of the range (read), then the
    figures off the event loop. What the handler does after its checks; the bench times it."""
    snapshot = await from_store(backend.positions.get_positions(account))
    equity = await from_store(backend.equity.get_equity(account, since=start, until=end))
    loop = asyncio.get_running_loop()

    async def fetch(since: datetime | None) -> list[Deal]:
        return await from_store(backend.deals.get_deals(account, since=since))

    async def build(deals: list[Deal]) -> Ledger:
        return await loop.run_in_executor(None, ledger_of, deals)

    async def page(after: int) -> list[TradeEvent]:
        wanted = set(TAILED)
        return await from_store(
            backend.events.list_events(after=after, limit=EVENTS_PAGE, accounts={account}, types=wanted)
        )

    async with entry.lock:
        ledger = await refresh(entry, fetch, build)
        await tail_events(entry, page, EVENTS_PAGE)

        def flags_cache(key: Any, compute: Callable[[], tuple[Flag, ...]]) -> tuple[Flag, ...]:
            return entry.flags_for((entry.rebuilds, entry.stops_version, key), compute)

        return await loop.run_in_executor(
            None,
            lambda: build_body(
                account=account,
                start=start,
                end=end,
                offset=offset,
                ledger=ledger,
                first=entry.first,
                stops=entry.stops,
                snapshot=snapshot,
                synced_balance=values.balance if values is not None else None,
                margin_level=values.margin_level if values is not None else None,
                equity=equity,
                final_scores=entry.final_score,
                offset_source=offset_source,
                flags_cache=flags_cache,
                stop_facts=entry.stop_facts,
            ),
        )


@routes.get("/api/v1/accounts/{account}/analytics")
@documented(
    Operation(
        "getAccountAnalytics",
        "An account's trade analytics, scores and behaviour flags",
        "v1",
        "read",
        AnalyticsBody,
        "MetaStats' figures over the trades closed in [from, to), from the stored deals",
        errors=(400, 401, 403, 404, 503),
        params=(ACCOUNT_PARAM, FROM_PARAM, TO_PARAM, OFFSET_PARAM),
        description=f"A range longer than {RANGE_MAX.days} days or `from` after `to` answers 400. Figures "
        "that cannot be computed are null and named in `undefined`.",
    )
)
async def get_analytics(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    account = parse_account(request)
    to_text, from_text = query_one(request, "to"), query_one(request, "from")
    end = parse_time(to_text, "to") if to_text is not None else now(request)
    start = parse_time(from_text, "from") if from_text is not None else end - RANGE_DEFAULT
    if start > end:
        raise ApiError(400, "invalid_range", "from is after to")
    if end - start > RANGE_MAX:
        raise ApiError(400, "range_too_large", f"the range may span at most {RANGE_MAX.days} days")
    offset_text = query_one(request, "broker_utc_offset_minutes")
    state = accounts(request).get(account)
    if state is None:
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    caller.check_client(state.client_id)
    offset, offset_source = parse_offset(offset_text), "query"
    if offset_text is None:
        learned = learned_offset(_sources(request), account, getattr(state, "source", None))
        offset, offset_source = (timedelta(0), "unknown") if learned is None else (learned, "terminal")
    entry = cache_of(request.app).entry(account)
    body = await answer(
        store_of(request),
        entry,
        account=account,
        start=start,
        end=end,
        offset=offset,
        offset_source=offset_source,
        values=state.values,
    )
    return web.json_response(body)
