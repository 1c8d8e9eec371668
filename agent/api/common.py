"""What every handler shares: what it reads from the app (settings, store, the fleet, the time), store
reads that fail as 503 JSON, and strict parameter parsing."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from aiohttp import hdrs, web
from aiohttp.typedefs import LooseHeaders

from agent.api.errors import ApiError
from agent.api.fleetview import Scope
from agent.api.keys import FLEET, FLEET_VIEW, SETTINGS, STORE, SYNC
from agent.api.queries import Accounts, SyncView
from agent.api.spec import Param
from agent.config import Settings
from agent.domain.freshness import Thresholds
from agent.store.base import Store
from agent.store.errors import StoreError

log = logging.getLogger("mt5_agent.api")

T = TypeVar("T")

ACCOUNT_MAX = 2**63 - 1  # both stores keep 64-bit integers; a bigger id cannot exist
CLIENT_ID_MAX_LENGTH = 200  # of a client id in a path: longer than any assignable one (128), never stored
OFFSET_MAX = 1_000_000_000
RUNS_LIMIT_MAX = 500
RUNS_LIMIT_DEFAULT = 50
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also take "1_0", " 7" and other scripts' digits


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def thresholds(request: web.Request) -> Thresholds:
    return request.app[SETTINGS].thresholds


def store(request: web.Request) -> Store:
    return request.app[STORE]


def known_accounts(request: web.Request) -> Accounts | None:
    """The read model's accounts now (one snapshot); None while the store's were never loaded."""
    fleet = request.app[FLEET]
    return fleet.snapshot().accounts if fleet.loaded else None


def accounts(request: web.Request) -> Accounts:
    """The read model's accounts now (one snapshot). Until the store's accounts are loaded (the store
    has been down since start) they are unknown: 503, as any read from a store that is down."""
    found = known_accounts(request)
    if found is None:
        raise store_unavailable()
    return found


OFFLOAD_ABOVE = 200  # accounts; above this a fleet version's pieces are built off the loop


async def known_scope(request: web.Request, client_id: str | None = None) -> Scope | None:
    """The accounts a caller sees (all, or one client's) as cached pieces of the fleet's snapshot now;
    None while the store's accounts were never loaded."""
    fleet = request.app[FLEET]
    if not fleet.loaded:
        return None
    view, snapshot = request.app[FLEET_VIEW], fleet.snapshot()
    found = view.cached(snapshot, client_id)
    if found is not None:
        return found
    if len(snapshot.accounts) <= OFFLOAD_ABOVE:
        return view.scope(snapshot, client_id)
    return await view.build(snapshot, client_id)


async def scope(request: web.Request, client_id: str | None = None) -> Scope:
    """`known_scope`, or 503 while the accounts are unknown (as `accounts`)."""
    found = await known_scope(request, client_id)
    if found is None:
        raise store_unavailable()
    return found


def accepts_gzip(request: web.Request) -> bool:
    """The client asked for gzip (`Accept-Encoding: gzip`, not with q=0)."""
    for part in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip"):
            q = params.strip().removeprefix("q=").strip()
            return not q or q.rstrip("0").rstrip(".") not in ("", "0")
    return False


GZIP_ABOVE = 2048  # bytes; smaller bodies fit a packet or two, compressing them costs more than it saves


def json_text(request: web.Request, text: str, headers: LooseHeaders | None = None) -> web.Response:
    """A JSON answer from its text, gzip-compressed when large and the client asks for it."""
    response = web.Response(text=text, content_type="application/json", headers=headers)
    if len(text) > GZIP_ABOVE:
        response.headers.add(hdrs.VARY, hdrs.ACCEPT_ENCODING)
        if accepts_gzip(request):
            response.enable_compression(web.ContentCoding.gzip)
    return response


def sync_view(request: web.Request) -> SyncView:
    return request.app[FLEET].status


def now(request: web.Request) -> datetime:
    """Request time, on the sync service's clock so tests with a fixed clock agree."""
    return request.app[SYNC].clock()


def store_unavailable() -> ApiError:
    return ApiError(503, "store_unavailable", "the account store is unavailable; try again later")


async def from_store(call: Awaitable[T]) -> T:
    """Await a store call; a store that is down is a 503 JSON answer, its details only in the log."""
    try:
        return await call
    except StoreError as exc:
        log.warning("store call failed: %s", exc)
        raise store_unavailable() from None


def parse_int(text: str, name: str, *, minimum: int, maximum: int) -> int:
    if not _DIGITS.fullmatch(text) or not minimum <= (value := int(text)) <= maximum:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {minimum} to {maximum}")
    return value


def parse_account(request: web.Request) -> int:
    return parse_int(request.match_info["account"], "account", minimum=1, maximum=ACCOUNT_MAX)


def parse_client_id(request: web.Request) -> str:
    client_id = request.match_info["client_id"]
    if not 1 <= len(client_id) <= CLIENT_ID_MAX_LENGTH:
        raise ApiError(400, "invalid_parameter", f"client_id must be 1 to {CLIENT_ID_MAX_LENGTH} characters")
    return client_id


def query_one(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (a repeated one is ambiguous: 400)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "invalid_parameter", f"{name} may be given only once")
    return values[0] if values else None


# -- the parameters above, as the document describes them -------------------------------------------

ACCOUNT_PARAM = Param(
    "account",
    "path",
    {"type": "integer", "minimum": 1, "maximum": ACCOUNT_MAX},
    description="MT5 login",
    example=891215,
)
CLIENT_ID_PARAM = Param(
    "client_id",
    "path",
    {"type": "string", "minLength": 1, "maxLength": CLIENT_ID_MAX_LENGTH, "pattern": "^[^/]+$"},
    example="client_alejandro",
)
LIMIT_PARAM = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": RUNS_LIMIT_MAX, "default": RUNS_LIMIT_DEFAULT},
)
OFFSET_PARAM = Param(
    "offset", "query", {"type": "integer", "minimum": 0, "maximum": OFFSET_MAX, "default": 0}
)
