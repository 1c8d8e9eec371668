"""The native account reads: `GET /api/v1/accounts` and `GET /api/v1/accounts/{account}`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import hdrs, web

from agent.api import schema
from agent.api.auth import require_read
from agent.api.common import (
    ACCOUNT_MAX,
    ACCOUNT_PARAM,
    accounts,
    json_text,
    now,
    parse_account,
    parse_int,
    query_one,
    scope,
    settings,
    thresholds,
)
from agent.api.errors import ApiError
from agent.api.fleetview import account_texts, compose, etag_matches, micros
from agent.api.keys import FLEET_VIEW
from agent.api.serialize import iso, thresholds_json
from agent.api.spec import Operation, Param, documented
from agent.domain.accounts import DataSource
from agent.domain.freshness import STATES

routes = web.RouteTableDef()

_STATE_NAMES = tuple(s.value for s in STATES)
_SOURCES = tuple(s.value for s in DataSource)
LIST_LIMIT_MAX = 10_000
STATE_PARAM = Param(
    "state",
    "query",
    {"type": "string", "enum": list(_STATE_NAMES)},
    description="only accounts in this freshness state",
)
SOURCE_PARAM = Param(
    "source",
    "query",
    {"type": "string", "enum": list(_SOURCES)},
    description="only accounts whose `data_source` is this",
)
LIST_LIMIT_PARAM = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX},
    description="at most this many accounts; the answer then carries `next_cursor` when more follow "
    "(without it: every account, no `next_cursor`)",
)
CURSOR_PARAM = Param(
    "cursor",
    "query",
    {"type": "string", "pattern": "^[0-9]{1,19}$"},
    description="the `next_cursor` of the previous page (opaque; stable across fleet versions: the page "
    "goes on after the last account it named, whatever changed since)",
)
READ_ERRORS = (401, 503)
LIST_DESCRIPTION = (
    "Accounts ordered by account number, with freshness computed at request time. Answers carry a weak "
    "`ETag` that changes when any account's values or freshness state change (or the fleet's content "
    "does); ages (`age_seconds`) move with time without changing it. Send it back as `If-None-Match`: "
    "304 with no body while nothing but the ages moved (compute ages from `live_data_at` and "
    "`generated_at` meanwhile). Large answers are gzip-compressed when the request says "
    "`Accept-Encoding: gzip`."
)


def _cursor(request: web.Request) -> int | None:
    text = query_one(request, "cursor")
    if text is None:
        return None
    return parse_int(text, "cursor", minimum=0, maximum=ACCOUNT_MAX)


@routes.get("/api/v1/accounts")
@documented(
    Operation(
        "listAccounts",
        "List accounts with their values and freshness",
        "v1",
        "read",
        schema.AccountList,
        "Accounts (a JWT sees only its own client's)",
        errors=(400, *READ_ERRORS),
        params=(STATE_PARAM, SOURCE_PARAM, LIST_LIMIT_PARAM, CURSOR_PARAM),
        description=LIST_DESCRIPTION,
        responses={304: ("Nothing but the ages changed since the `If-None-Match` ETag", None)},
    )
)
async def list_accounts(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    wanted = query_one(request, "state")
    if wanted is not None and wanted not in _STATE_NAMES:
        raise ApiError(400, "invalid_parameter", f"state must be one of {', '.join(_STATE_NAMES)}")
    source = query_one(request, "source")
    if source is not None and source not in _SOURCES:
        raise ApiError(400, "invalid_parameter", f"source must be one of {', '.join(_SOURCES)}")
    limit_text = query_one(request, "limit")
    limit = None
    if limit_text is not None:
        limit = parse_int(limit_text, "limit", minimum=1, maximum=LIST_LIMIT_MAX)
    after = _cursor(request)
    client_id = None if caller.sees_all else caller.client_id
    found = await scope(request, client_id)
    t, limits = now(request), thresholds(request)
    key = json.dumps([client_id, wanted, source, limit, after])
    tag = request.app[FLEET_VIEW].etag(found, t, limits, key)
    headers = {hdrs.ETAG: tag, hdrs.CACHE_CONTROL: "no-cache"}
    if etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), tag):
        return web.Response(status=304, headers=headers)
    texts, next_cursor = found.select(t, limits, state=wanted, source=source, after=after, limit=limit)
    rest: dict[str, Any] = {
        "count": len(texts),
        "thresholds": thresholds_json(limits),
        "generated_at": iso(t),
    }
    if next_cursor is not None:
        rest["next_cursor"] = str(next_cursor)
    return json_text(request, compose(texts, rest), headers)


@routes.get("/api/v1/accounts/{account}")
@documented(
    Operation(
        "getAccount",
        "One account with its values and freshness",
        "v1",
        "read",
        schema.Account,
        "One account",
        errors=(400, 401, 403, 404, 503),
        params=(ACCOUNT_PARAM,),
        description="An account stored or listed by the source, with its freshness; a client JWT may "
        "read only its own client's accounts (403 otherwise).",
    )
)
async def get_account(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    account = parse_account(request)
    state = accounts(request).get(account)
    if state is None:
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    caller.check_client(state.client_id)
    piece = request.app[FLEET_VIEW].piece(state)
    (text,) = account_texts((piece,), micros(now(request)), thresholds(request))
    return web.Response(text=text, content_type="application/json")
