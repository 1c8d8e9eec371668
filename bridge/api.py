"""The bridge's REST API (aiohttp): the seed's endpoints plus positions, a batch read and OpenAPI.

Every answer is JSON, errors included (`{"error": {"code", "message"}}`): a middleware turns bridge
errors, aiohttp's 404/405 and unexpected exceptions into that shape, so a client never parses HTML or
sees a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from bridge.errors import (
    BadAccountId,
    BadRequest,
    BridgeError,
    NoLiveData,
    Unauthorized,
    error_body,
)
from bridge.metrics import UNMATCHED_ROUTE, BridgeMetrics
from bridge.openapi import build_document
from bridge.pool import AccountRead, TerminalPool
from bridge.sim_rates import TIMEFRAMES
from bridge.terminal import TradeDeal, TradePosition

log = logging.getLogger("bridge.api")

POOL = web.AppKey("bridge_pool", TerminalPool)
TOKEN = web.AppKey("bridge_token", str)
CALL_TIMEOUT = web.AppKey("bridge_call_timeout", float)
PROBE = web.AppKey("bridge_probe", asyncio.Task)
METRICS = web.AppKey("bridge_metrics", BridgeMetrics)

HEALTH_PATH = "/api/mt5/bridge/health"
OPENAPI_PATH = "/api/openapi.json"
METRICS_PATH = "/metrics"
PUBLIC_PATHS = frozenset({HEALTH_PATH, OPENAPI_PATH})
FEATURES = ["batch", "positions", "positions_batch", "rates"]
DEFAULT_WINDOW = timedelta(days=7)
MAX_LOGIN = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- formatting ----------------------------------------------------------------------------------------


def iso_utc(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the one timestamp format of this API."""
    if dt.tzinfo is UTC:  # the usual case (every read's time): no conversion, "+00:00" is the end
        return dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def broker_ms_to_utc(broker_ms: int, offset_hours: float) -> datetime:
    """MT5 reports times as broker wall-clock epoch; subtracting the offset gives the true instant."""
    return _EPOCH + timedelta(milliseconds=broker_ms - round(offset_hours * 3_600_000))


def _num(x: float) -> float | None:
    """Pass numbers through; a non-finite one is reported as null, never as a made-up zero."""
    return float(x) if math.isfinite(x) else None


# MT5's ACCOUNT_STOPOUT_MODE: how margin_so_call and margin_so_so are given (DESIGN.md 12)
STOPOUT_MODES = {0: "percent", 1: "money"}


def stopout_mode(mode: Any) -> str | None:
    """`margin_so_mode` as the API names it; null for a value MT5 does not define (never a guess)."""
    return STOPOUT_MODES.get(mode) if type(mode) is int else None


def live_data(read: AccountRead) -> dict[str, Any]:
    i = read.info
    return {
        "login": i.login,
        "name": i.name,
        "server": i.server,
        "currency": i.currency,
        "leverage": i.leverage,
        "balance": _num(i.balance),
        "equity": _num(i.equity),
        "profit": _num(i.profit),
        "margin": _num(i.margin),
        "margin_free": _num(i.margin_free),
        "margin_level": _num(i.margin_level),
        "margin_so_mode": stopout_mode(i.margin_so_mode),
        "margin_so_call": _num(i.margin_so_call),
        "margin_so_so": _num(i.margin_so_so),
        "trade_allowed": bool(i.trade_allowed),
        "timestamp": iso_utc(read.read_at),
    }


def stored_data(read: AccountRead | None) -> dict[str, Any] | None:
    if read is None:
        return None
    i = read.info
    return {
        "balance": _num(i.balance),
        "equity": _num(i.equity),
        "profit": _num(i.profit),
        "margin": _num(i.margin),
        "margin_free": _num(i.margin_free),
        "margin_level": _num(i.margin_level),
        "leverage": i.leverage,
        "currency": i.currency,
        "trade_allowed": bool(i.trade_allowed),
        "timestamp": iso_utc(read.read_at),
    }


def deal_json(d: TradeDeal, offset_hours: float) -> dict[str, Any]:
    broker_ms = d.time_msc or d.time * 1000
    return {
        "ticket": d.ticket,
        "order": d.order,
        "time": iso_utc(broker_ms_to_utc(broker_ms, offset_hours)),
        "type": d.type,
        "entry": d.entry,
        "volume": _num(d.volume),
        "price": _num(d.price),
        "commission": _num(d.commission),
        "swap": _num(d.swap),
        "profit": _num(d.profit),
        "fee": _num(d.fee),
        "symbol": d.symbol,
        "comment": d.comment,
        "position_id": d.position_id,
        "magic": d.magic,
        "reason": d.reason,
    }


def position_json(p: TradePosition, offset_hours: float) -> dict[str, Any]:
    return {
        "ticket": p.ticket,
        "time": iso_utc(broker_ms_to_utc(p.time_msc or p.time * 1000, offset_hours)),
        "time_update": iso_utc(broker_ms_to_utc(p.time_update_msc or p.time_update * 1000, offset_hours)),
        "type": p.type,
        "magic": p.magic,
        "identifier": p.identifier,
        "reason": p.reason,
        "volume": _num(p.volume),
        "price_open": _num(p.price_open),
        "sl": _num(p.sl),
        "tp": _num(p.tp),
        "price_current": _num(p.price_current),
        "swap": _num(p.swap),
        "profit": _num(p.profit),
        "symbol": p.symbol,
        "comment": p.comment,
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


# -- the batch answer, pre-encoded -------------------------------------------------------------------------
# A 10,000-account /accounts/live answer is 5.4 MB: building a dict per account and encoding the whole
# document cost the bridge ~0.13 s a cycle. The batch answer is instead written from per-account pieces,
# each value encoded exactly as json.dumps would (same separators, same escapes, same number forms), so
# the bytes are those of `_json(the same document)` (tests/bridge/test_batch_answer_golden.py). An
# account's stored_data piece is written with its live_data piece, when its read is new, and kept for the
# next batch (where that read is the stored one): each read is encoded once.

_dumps = json.dumps
_str_json: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _value_json(v: Any) -> str:
    """One value as json.dumps writes it (within a document too)."""
    t = type(v)
    if t is str:
        return _str_json(v)
    if t is int:
        return int.__repr__(v)
    return _dumps(v)


def _num_json(x: float) -> str:
    """`_num(x)`, encoded."""
    return float.__repr__(float(x)) if math.isfinite(x) else "null"


class _Encoded(NamedTuple):
    """What is kept of a read's pieces: its stored_data, and the values the summary shows."""

    read: AccountRead
    stored: str
    balance: str
    equity: str
    timestamp: str


_float_repr, _int_repr = float.__repr__, int.__repr__
_LEVELS_CACHE: dict[tuple[Any, ...], str] = {}  # a few broker configurations: encoded once each
_LEVELS_CACHE_MAX = 256


def _levels_json(mode: Any, call: Any, stop_out: Any) -> str:
    """The broker's margin levels of live_data, encoded (the same for every account of a broker group, so
    kept per value: only non-zero floats are keys, as 0.0 and -0.0 are equal keys but encode apart)."""
    cacheable = type(call) is float and type(stop_out) is float and call and stop_out and type(mode) is int
    key = (mode, call, stop_out) if cacheable else None
    text = _LEVELS_CACHE.get(key) if key is not None else None
    if text is None:
        text = (
            f'"margin_so_mode": {_value_json(stopout_mode(mode))}, "margin_so_call": {_num_json(call)}, '
            f'"margin_so_so": {_num_json(stop_out)}'
        )
        if key is not None and len(_LEVELS_CACHE) < _LEVELS_CACHE_MAX:
            _LEVELS_CACHE[key] = text
    return text


def _encode(read: AccountRead) -> tuple[str, _Encoded]:
    """The read's live_data piece, and what is kept of it."""
    # The usual types are encoded inline (a finite float is its repr, a str its ASCII-escaped form, an
    # int its repr); anything else goes through _num_json/_value_json, so the result is the same.
    i = read.info
    b, e, p, m, mf, ml = i.balance, i.equity, i.profit, i.margin, i.margin_free, i.margin_level
    balance = _float_repr(b) if type(b) is float and b - b == 0.0 else _num_json(b)
    equity = _float_repr(e) if type(e) is float and e - e == 0.0 else _num_json(e)
    profit = _float_repr(p) if type(p) is float and p - p == 0.0 else _num_json(p)
    margin = _float_repr(m) if type(m) is float and m - m == 0.0 else _num_json(m)
    free = _float_repr(mf) if type(mf) is float and mf - mf == 0.0 else _num_json(mf)
    level = _float_repr(ml) if type(ml) is float and ml - ml == 0.0 else _num_json(ml)
    login, name, server, cur, lev = i.login, i.name, i.server, i.currency, i.leverage
    currency = _str_json(cur) if type(cur) is str else _value_json(cur)
    leverage = _int_repr(lev) if type(lev) is int else _value_json(lev)
    allowed = "true" if i.trade_allowed else "false"
    ts = f'"{iso_utc(read.read_at)}"'  # digits, '-', ':', 'T', '.' and 'Z': nothing to escape
    levels = _levels_json(i.margin_so_mode, i.margin_so_call, i.margin_so_so)
    numbers = (
        f'"balance": {balance}, "equity": {equity}, "profit": {profit}, "margin": {margin}, '
        f'"margin_free": {free}, "margin_level": {level}'
    )
    live = (
        f'{{"login": {_int_repr(login) if type(login) is int else _value_json(login)}, '
        f'"name": {_str_json(name) if type(name) is str else _value_json(name)}, '
        f'"server": {_str_json(server) if type(server) is str else _value_json(server)}, '
        f'"currency": {currency}, "leverage": {leverage}, {numbers}, {levels}, '
        f'"trade_allowed": {allowed}, "timestamp": {ts}}}'
    )
    stored = (
        f'{{{numbers}, "leverage": {leverage}, "currency": {currency}, "trade_allowed": {allowed}, '
        f'"timestamp": {ts}}}'
    )
    return live, _Encoded(read, stored, balance, equity, ts)


def encode_read(read: AccountRead) -> tuple[str, str]:
    """(`live_data(read)`, `stored_data(read)`) as JSON text, sharing the encoded values."""
    live, kept = _encode(read)
    return live, kept.stored


class StoredPieces:
    """What is kept of each account's last batch read once its live piece is sent: its stored piece (the
    next batch's) and the values the summary lists in between. The live piece is not kept: never reused."""

    def __init__(self) -> None:
        self._pieces: dict[int, _Encoded] = {}

    def encoded(self, login: int, read: AccountRead) -> _Encoded:
        """The read's pieces: kept when it is the account's last batch read, else encoded now (a read
        made by a single-account call, not seen here)."""
        kept = self._pieces.get(login)
        if kept is not None and kept.read is read:
            return kept
        return _encode(read)[1]

    def stored(self, login: int, read: AccountRead | None) -> str:
        return "null" if read is None else self.encoded(login, read).stored

    def live(self, login: int, read: AccountRead) -> str:
        live, self._pieces[login] = _encode(read)
        return live


PIECES = web.AppKey("bridge_stored_pieces", StoredPieces)


def _json_text(text: str) -> web.Response:
    """A 200 answer of JSON text already encoded, with the headers `_json` gives."""
    return web.json_response(text=text)


# -- request parsing -----------------------------------------------------------------------------------


def parse_login(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) <= 0 or int(text) > MAX_LOGIN:
        raise BadAccountId(f"account id must be a positive integer, got {text[:40]!r}")
    return int(text)


_SPACE_OFFSET = re.compile(r"(T[0-9:.]+) (\d{2}(:?\d{2})?)$")
_LEAP_SECOND = re.compile(r"(T\d{2}:\d{2}):60")


def parse_instant(name: str, value: str) -> datetime:
    """ISO-8601; naive means UTC. A '+' in an unencoded query arrives as a space, so accept that too.
    Instants are clamped to [1970, 3000): MT5 cannot take times before the epoch, and the broker-offset
    shift must not overflow datetime."""
    text = _SPACE_OFFSET.sub(r"\1+\2", value.strip().upper())  # RFC 3339 allows a lowercase t and z
    text = _LEAP_SECOND.sub(r"\1:59.999999", text)  # MT5 has no leap seconds; keep the instant's order
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO-8601 date-time, got {value[:40]!r}") from None
    try:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the end by its offset
        return _EPOCH if dt.year < 1970 else _LATEST
    return min(max(dt, _EPOCH), _LATEST)


def _login_of(request: web.Request) -> int:
    login = parse_login(request.match_info["id"])
    request.app[POOL].handle(login)  # 404 before any terminal work
    return login


# -- middleware ----------------------------------------------------------------------------------------


def _authorized(request: web.Request) -> bool:
    token = request.app[TOKEN]
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def route_template(request: web.Request) -> str:
    """The matched route's template (`/api/mt5/account/{id}/info`), never the raw path: a bounded label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def http_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: times every request with the status it finally got (errors are already JSON here)."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        request.app[METRICS].observe_http(route_template(request), status, time.perf_counter() - start)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.path not in PUBLIC_PATHS and not _authorized(request):
            raise Unauthorized("a valid bearer token is required")
        return await handler(request)
    except Unauthorized as e:
        return _json(e.body(), e.status, {"WWW-Authenticate": 'Bearer realm="mt5-bridge"'})
    except BridgeError as e:
        return _json(e.body(), e.status)
    except web.HTTPException as e:
        if e.status == 404:
            return _json(error_body("not_found", f"no such endpoint: {request.path[:200]}"), 404)
        if e.status == 405:
            allow = e.headers.get("Allow", "")
            body = error_body("method_not_allowed", f"{request.method} is not allowed here")
            return _json(body, 405, {"Allow": allow} if allow else None)
        return _json(error_body(f"http_{e.status}", e.reason), e.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json(error_body("internal_error", "internal error"), 500)


# -- handlers ------------------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """From cached state only: health must answer at once even while a terminal is stuck."""
    pool = request.app[POOL]
    handles = pool.handles
    healthy = 0 if pool.closed else sum(h.healthy for h in handles)
    status = "healthy" if healthy == len(handles) else "degraded" if healthy else "unhealthy"
    body: dict[str, Any] = {
        "status": status,
        "timestamp": iso_utc(datetime.now(UTC)),
        "mt5": {"available": healthy > 0},
        "features": FEATURES,
    }
    if _authorized(request):
        first = next((h for h in handles if h.healthy and h.terminal_info), None) or handles[0]
        body["mt5"]["terminal_info"] = first.terminal_info or {}
        body["terminals"] = {
            "total": len(handles),
            "healthy": healthy,
            "items": [
                {
                    "name": h.name,
                    "healthy": h.healthy,
                    "accounts": list(h.accounts),
                    "utc_offset_hours": h.terminal.utc_offset_hours,
                    "last_error": h.last_error,
                    "terminal_info": h.terminal_info,
                }
                for h in handles
            ],
        }
    return _json(body)


async def accounts_summary(request: web.Request) -> web.Response:
    """Last known values only: listing accounts must not log the terminals in to each of them. Written
    from pieces, like the batch answer: the bytes of `_json({"accounts": [...]})` with these entries:
    account, name, server, currency, balance, equity, terminal, updated_at."""
    pool = request.app[POOL]
    pieces = request.app[PIECES]
    terminals: dict[str, str] = {}
    out: list[str] = []
    add = out.append
    for login in pool.accounts:
        handle = pool.handle(login)
        creds, known = handle.accounts[login], pool.last_known(login)
        name = handle.name
        terminal = terminals.get(name)
        if terminal is None:
            terminal = terminals[name] = _value_json(name)
        if known is None:
            currency: str | None = creds.currency or None
            values = ("null", "null", "null")
            shown = creds.name or None
        else:
            info = known.info
            e = pieces.encoded(login, known)
            currency = info.currency or creds.currency or None
            values = (e.balance, e.equity, e.timestamp)
            shown = creds.name or info.name
        add(
            f'{{"account": {_value_json(login)}, "name": {_value_json(shown)}, '
            f'"server": {_value_json(creds.server)}, "currency": {_value_json(currency)}, '
            f'"balance": {values[0]}, "equity": {values[1]}, "terminal": {terminal}, '
            f'"updated_at": {values[2]}}}'
        )
    return _json_text(f'{{"accounts": [{", ".join(out)}]}}')


async def account_info(request: web.Request) -> web.Response:
    login = _login_of(request)
    pool = request.app[POOL]
    previous = pool.last_known(login)
    try:
        read = await pool.read_account(login, request.app[CALL_TIMEOUT])
    except NoLiveData as e:
        log.warning("account %s: no live data, serving stored data (%s)", login, e.message)
        return _json(
            {
                "account_id": login,
                "live_data": None,
                "stored_data": stored_data(previous),
                "live_error": e.body()["error"],
            }
        )
    return _json({"account_id": login, "live_data": live_data(read), "stored_data": stored_data(previous)})


async def account_balance(request: web.Request) -> web.Response:
    login = _login_of(request)
    read = await request.app[POOL].read_account(login, request.app[CALL_TIMEOUT])
    i = read.info
    return _json(
        {
            "account_id": login,
            "balance": _num(i.balance),
            "equity": _num(i.equity),
            "profit": _num(i.profit),
            "currency": i.currency,
            "timestamp": iso_utc(read.read_at),
        }
    )


async def account_trades(request: web.Request) -> web.Response:
    login = _login_of(request)
    q = request.query
    date_to = parse_instant("to", q["to"]) if "to" in q else request.app[POOL].terminal(login).now()
    date_from = parse_instant("from", q["from"]) if "from" in q else max(date_to - DEFAULT_WINDOW, _EPOCH)
    if date_from > date_to:
        raise BadRequest("from must not be after to")
    pool = request.app[POOL]
    deals = await pool.read_deals(login, date_from, date_to, request.app[CALL_TIMEOUT])
    offset = pool.terminal(login).utc_offset_hours
    body = [
        deal_json(d, offset) for d in sorted(deals, key=lambda d: (d.time_msc or d.time * 1000, d.ticket))
    ]
    return _json({"account_id": login, "from": iso_utc(date_from), "to": iso_utc(date_to), "deals": body})


async def account_positions(request: web.Request) -> web.Response:
    login = _login_of(request)
    pool = request.app[POOL]
    read, positions = await pool.read_positions(login, request.app[CALL_TIMEOUT])
    offset = pool.terminal(login).utc_offset_hours
    return _json(
        {
            "account_id": login,
            "timestamp": iso_utc(read.read_at),
            "positions": [position_json(p, offset) for p in positions],
        }
    )


RATES_MAX_COUNT = 5000
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}$")  # broker symbols: EURUSD, XAUUSD.m, US30#


async def account_rates(request: web.Request) -> web.Response:
    """The account's terminal's last `count` bars of `symbol` (MT5 copy_rates_from_pos; the last one is
    the bar in progress), oldest first, times UTC: the broker's own prices for the account's symbols."""
    login = _login_of(request)
    symbol = request.match_info["symbol"]
    if not _SYMBOL.match(symbol):
        raise BadRequest("symbol must be 1-32 letters, digits or . _ # + - (a broker's symbol name)")
    q = request.query
    timeframe = q.get("timeframe", "M5")
    if timeframe not in TIMEFRAMES:
        raise BadRequest(f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    raw_count = q.get("count", "100")
    if not (raw_count.isascii() and raw_count.isdigit() and 1 <= int(raw_count) <= RATES_MAX_COUNT):
        raise BadRequest(f"count must be an integer from 1 to {RATES_MAX_COUNT}")
    pool = request.app[POOL]
    bars = await pool.read_rates(
        login, symbol, TIMEFRAMES[timeframe][0], int(raw_count), request.app[CALL_TIMEOUT]
    )
    offset = pool.terminal(login).utc_offset_hours
    return _json(
        {
            "account_id": login,
            "symbol": symbol,
            "timeframe": timeframe,
            "bars": [
                {
                    "time": iso_utc(broker_ms_to_utc(b.time * 1000, offset)),
                    "open": _num(b.open),
                    "high": _num(b.high),
                    "low": _num(b.low),
                    "close": _num(b.close),
                    "tick_volume": b.tick_volume,
                }
                for b in bars
            ],
        }
    )


async def accounts_live(request: web.Request) -> web.Response:
    """Every account in one call. A failing account is reported in its own entry (with the status its
    single-account call would have had), so one bad terminal never fails the batch. Written from
    pre-encoded pieces (see StoredPieces): the bytes of `_json` of the same document."""
    pool = request.app[POOL]
    pieces = request.app[PIECES]
    logins = _logins_query(request)
    before = {login: pool.last_known(login) for login in logins}
    results = await pool.read_many(logins, request.app[CALL_TIMEOUT])
    entries: list[str] = []
    add = entries.append
    for login, result in results.items():
        if isinstance(result, AccountRead):
            stored = pieces.stored(login, before[login])
            live = pieces.live(login, result)
            add(f'{{"account_id": {_value_json(login)}, "live_data": {live}, "stored_data": {stored}}}')
        elif isinstance(result, NoLiveData):
            stored = pieces.stored(login, before[login])
            error = _dumps(result.body()["error"])
            add(
                f'{{"account_id": {_value_json(login)}, "live_data": null, "stored_data": {stored}, '
                f'"live_error": {error}}}'
            )
        else:
            add(_dumps({"account_id": login, "error": result.body()["error"], "status": result.status}))
    now = _str_json(iso_utc(datetime.now(UTC)))
    return _json_text(f'{{"timestamp": {now}, "accounts": [{", ".join(entries)}]}}')


def _logins_query(request: web.Request) -> list[int]:
    raw = request.query.get("accounts")
    if raw is None:
        return list(request.app[POOL].accounts)
    parts = [p.strip() for p in raw.split(",")]
    if not any(parts):
        raise BadAccountId("accounts must list at least one account id")
    return list(dict.fromkeys(parse_login(p) for p in parts))


async def accounts_positions(request: web.Request) -> web.Response:
    """Every account's open positions in one call (feature `positions_batch`): one request per poll round
    instead of one per account. A failing account is reported in its own entry, with the status its
    single-account call would have had."""
    pool = request.app[POOL]
    results = await pool.read_many_positions(_logins_query(request), request.app[CALL_TIMEOUT])
    entries: list[dict[str, Any]] = []
    for login, result in results.items():
        if isinstance(result, tuple):
            read, positions = result
            offset = pool.terminal(login).utc_offset_hours
            entries.append(
                {
                    "account_id": login,
                    "timestamp": iso_utc(read.read_at),
                    "positions": [position_json(p, offset) for p in positions],
                }
            )
        else:
            entries.append({"account_id": login, "error": result.body()["error"], "status": result.status})
    return _json({"timestamp": iso_utc(datetime.now(UTC)), "accounts": entries})


async def openapi(request: web.Request) -> web.Response:
    return _json(build_document())


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the bridge's own registry (text, or OpenMetrics when asked for)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(request.app[METRICS].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


# -- app -----------------------------------------------------------------------------------------------


def create_app(
    pool: TerminalPool, *, token: str | None = None, call_timeout: float = 10.0
) -> web.Application:
    """The bridge app over a pool. The app owns the pool's shutdown: on cleanup it closes the pool,
    which releases terminal threads without waiting on calls that hang."""
    if call_timeout <= 0:
        raise ValueError("call_timeout must be positive")
    app = web.Application(middlewares=[http_metrics, json_errors])
    app[POOL] = pool
    app[METRICS] = pool.metrics
    app[TOKEN] = token or ""
    app[CALL_TIMEOUT] = float(call_timeout)
    app[PIECES] = StoredPieces()
    r = app.router
    r.add_get(HEALTH_PATH, health)
    r.add_get("/api/mt5/accounts/summary", accounts_summary)
    r.add_get("/api/mt5/accounts/live", accounts_live)
    r.add_get("/api/mt5/accounts/positions", accounts_positions)
    r.add_get("/api/mt5/account/{id}/info", account_info)
    r.add_get("/api/mt5/account/{id}/balance", account_balance)
    r.add_get("/api/mt5/account/{id}/trades", account_trades)
    r.add_get("/api/mt5/account/{id}/positions", account_positions)
    r.add_get("/api/mt5/account/{id}/rates/{symbol}", account_rates)
    r.add_get(OPENAPI_PATH, openapi)
    r.add_get(METRICS_PATH, metrics)
    app.on_startup.append(_start_probe)
    app.on_cleanup.append(_close_pool)
    return app


async def _start_probe(app: web.Application) -> None:
    app[PROBE] = asyncio.create_task(app[POOL].probe(app[CALL_TIMEOUT]), name="bridge-probe")


async def _close_pool(app: web.Application) -> None:
    task = app.get(PROBE)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    app[POOL].close()
