"""The seed backend's account paths (seed sections 1.5, 10), so the existing frontend keeps working.

A client is known to the agent only through its accounts: a client id with no stored accounts is
404 for every caller (a JWT for another client gets 403 first, so it learns nothing about it).
Responses never carry the client id: it is one of the private fields (DESIGN.md section 5).
The seed's sync trigger and health live with the other admin operations (agent.api.admin).
"""

from __future__ import annotations

from aiohttp import web

from agent.api import schema
from agent.api.auth import require_admin, require_read
from agent.api.common import (
    CLIENT_ID_PARAM,
    json_text,
    now,
    parse_client_id,
    scope,
    settings,
    thresholds,
)
from agent.api.errors import ApiError
from agent.api.fleetview import Scope, compose
from agent.api.serialize import iso
from agent.api.spec import Operation, documented

routes = web.RouteTableDef()

CLIENT_ERRORS = (400, 401, 403, 404, 503)


async def _client_scope(request: web.Request) -> Scope:
    caller = require_read(request, settings(request))
    client_id = parse_client_id(request)
    caller.check_client(client_id)
    found = await scope(request, client_id)
    if not found.pieces:
        raise ApiError(404, "client_not_found", "no accounts are stored for this client")
    return found


def _accounts_page(request: web.Request, found: Scope) -> web.Response:
    """The seed's account lists (a client's, the admin's), from the cached pieces."""
    t = now(request)
    texts, _ = found.select(t, thresholds(request))
    return json_text(request, compose(texts, {"count": len(texts), "generated_at": iso(t)}))


@routes.get("/api/client/{client_id}/mt5-accounts")
@documented(
    Operation(
        "clientAccounts",
        "A client's accounts (seed path)",
        "seed",
        "read",
        schema.ClientAccounts,
        "The client's accounts",
        errors=CLIENT_ERRORS,
        params=(CLIENT_ID_PARAM,),
        description="A JWT may read only its own client (403 otherwise). A client with no stored "
        "accounts is 404 for every caller.",
    )
)
async def get_client_accounts(request: web.Request) -> web.Response:
    return _accounts_page(request, await _client_scope(request))


@routes.get("/api/client/{client_id}/portfolio")
@documented(
    Operation(
        "clientPortfolio",
        "A client's accounts with totals per currency (seed path)",
        "seed",
        "read",
        schema.Portfolio,
        "The client's accounts with per-currency totals of the stored values",
        errors=CLIENT_ERRORS,
        params=(CLIENT_ID_PARAM,),
        description="Totals are sums of stored balance/equity/profit, nothing recalculated. Accounts "
        "missing any of them (or a currency) are listed and counted in `not_summed`.",
    )
)
async def get_client_portfolio(request: web.Request) -> web.Response:
    found = await _client_scope(request)
    t = now(request)
    texts, _ = found.select(t, thresholds(request))
    totals, not_summed = found.totals()
    rest = {
        "count": len(texts),
        "totals": totals,
        "accounts_summed": len(texts) - len(not_summed),
        "accounts_not_summed": len(not_summed),
        "not_summed": not_summed,
        "generated_at": iso(t),
    }
    return json_text(request, compose(texts, rest))


@routes.get("/api/admin/mt5/accounts")
@documented(
    Operation(
        "adminAccounts",
        "Every account (seed admin path)",
        "admin",
        "admin",
        schema.AdminAccounts,
        "Every account",
        errors=(401, 403, 503),
        description="The seed backend's admin listing, in its shape: every stored account.",
    )
)
async def get_admin_accounts(request: web.Request) -> web.Response:
    require_admin(request, settings(request))
    return _accounts_page(request, await scope(request))
