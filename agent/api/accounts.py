"""The native account reads: `GET /api/v1/accounts` and `GET /api/v1/accounts/{account}`."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from agent.api import queries, schema
from agent.api.auth import require_read
from agent.api.common import (
    ACCOUNT_PARAM,
    accounts,
    now,
    parse_account,
    query_one,
    settings,
    thresholds,
)
from agent.api.errors import ApiError
from agent.api.serialize import account_json
from agent.api.spec import Operation, Param, documented
from agent.domain.freshness import STATES

routes = web.RouteTableDef()

_STATE_NAMES = tuple(s.value for s in STATES)
OFFLOAD_ABOVE = 200  # accounts; below this, serialising inline is cheaper than a thread hop
STATE_PARAM = Param(
    "state",
    "query",
    {"type": "string", "enum": list(_STATE_NAMES)},
    description="only accounts in this freshness state",
)
READ_ERRORS = (401, 503)


@routes.get("/api/v1/accounts")
@documented(
    Operation(
        "listAccounts",
        "listAccounts",
        "v1",
        "read",
        schema.AccountList,
        "Accounts (a JWT sees only its own client's)",
        errors=(400, *READ_ERRORS),
        params=(STATE_PARAM,),
    )
)
async def list_accounts(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    wanted = query_one(request, "state")
    if wanted is not None and wanted not in _STATE_NAMES:
        raise ApiError(400, "invalid_parameter", f"state must be one of {', '.join(_STATE_NAMES)}")
    client_id = None if caller.sees_all else caller.client_id
    records = queries.account_records(accounts(request), client_id)
    t, limits = now(request), thresholds(request)

    def body() -> str:
        return json.dumps(queries.account_list(records, t, limits, wanted))

    # A large fleet takes tens of ms to serialise: off the loop, so single reads keep flowing.
    text = await asyncio.to_thread(body) if len(records) > OFFLOAD_ABOVE else body()
    return web.Response(text=text, content_type="application/json")


@routes.get("/api/v1/accounts/{account}")
@documented(
    Operation(
        "getAccount",
        "getAccount",
        "v1",
        "read",
        schema.Account,
        "One account",
        errors=(400, 401, 403, 404, 503),
        params=(ACCOUNT_PARAM,),
    )
)
async def get_account(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    account = parse_account(request)
    record = queries.account_record(accounts(request), account)
    if record is None:
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    caller.check_client(record.client_id)
    return web.json_response(account_json(record, now(request), thresholds(request)))
