"""The bridge's REST API (aiohttp): the seed's endpoints plus positions, a batch read and OpenAPI.

Every answer is JSON, errors included (`{"error": {"code", "message"}}`): a middleware turns bridge
errors, aiohttp's 404/405 and unexpected exceptions into that shape, so a client never parses HTML or
sees a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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
FEATURES = ["batch", "positions", "positions_batch"]
DEFAULT_WINDOW = timedelta(days=7)
MAX_LOGIN = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(3000, 1, 1, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- formatting ----------------------------------------------------------------------------------------


def iso_utc(dt: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the one timestamp format of this API."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def broker_ms_to_utc(broker_ms: int, offset_hours: float) -> datetime:
    """MT5 reports times as broker wall-clock epoch; subtracting the offset gives the true instant."""
    return _EPOCH + timedelta(milliseconds=broker_ms - round(offset_hours * 3_600_000))


def _num(x: float) -> float | None:
    """Pass numbers through; a non-finite one is reported as null, never as a made-up zero."""
    return float(x) if math.isfinite(x) else None


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
    """Last known values only: listing accounts must not log the terminals in to each of them."""
    pool = request.app[POOL]
    out = []
    for login in pool.accounts:
        creds, known = pool.credentials(login), pool.last_known(login)
        info = known.info if known else None
        out.append(
            {
                "account": login,
                "name": creds.name or (info.name if info else None),
                "server": creds.server,
                "currency": (info.currency if info else None) or creds.currency or None,
                "balance": _num(info.balance) if info else None,
                "equity": _num(info.equity) if info else None,
                "terminal": pool.handle(login).name,
                "updated_at": iso_utc(known.read_at) if known else None,
            }
        )
    return _json({"accounts": out})


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
    date_to = parse_instant("to", q["to"]) if "to" in q else datetime.now(UTC)
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


async def accounts_live(request: web.Request) -> web.Response:
    """Every account in one call. A failing account is reported in its own entry (with the status its
    single-account call would have had), so one bad terminal never fails the batch."""
    pool = request.app[POOL]
    logins = _logins_query(request)
    before = {login: pool.last_known(login) for login in logins}
    results = await pool.read_many(logins, request.app[CALL_TIMEOUT])
    entries: list[dict[str, Any]] = []
    for login, result in results.items():
        if isinstance(result, AccountRead):
            entries.append(
                {
                    "account_id": login,
                    "live_data": live_data(result),
                    "stored_data": stored_data(before[login]),
                }
            )
        elif isinstance(result, NoLiveData):
            entries.append(
                {
                    "account_id": login,
                    "live_data": None,
                    "stored_data": stored_data(before[login]),
                    "live_error": result.body()["error"],
                }
            )
        else:
            entries.append({"account_id": login, "error": result.body()["error"], "status": result.status})
    return _json({"timestamp": iso_utc(datetime.now(UTC)), "accounts": entries})


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
    r = app.router
    r.add_get(HEALTH_PATH, health)
    r.add_get("/api/mt5/accounts/summary", accounts_summary)
    r.add_get("/api/mt5/accounts/live", accounts_live)
    r.add_get("/api/mt5/accounts/positions", accounts_positions)
    r.add_get("/api/mt5/account/{id}/info", account_info)
    r.add_get("/api/mt5/account/{id}/balance", account_balance)
    r.add_get("/api/mt5/account/{id}/trades", account_trades)
    r.add_get("/api/mt5/account/{id}/positions", account_positions)
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
