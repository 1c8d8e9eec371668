"""The sync history: `GET /api/v1/sync/runs` (token holders only)."""

from __future__ import annotations

from aiohttp import web

from agent.api import queries, schema
from agent.api.auth import require_read
from agent.api.common import (
    LIMIT_PARAM,
    OFFSET_MAX,
    OFFSET_PARAM,
    RUNS_LIMIT_DEFAULT,
    RUNS_LIMIT_MAX,
    from_store,
    parse_int,
    query_one,
    settings,
    store,
)
from agent.api.errors import ApiError
from agent.api.spec import Operation, documented

routes = web.RouteTableDef()


@routes.get("/api/v1/sync/runs")
@documented(
    Operation(
        "listSyncRuns",
        "List sync runs, newest first",
        "v1",
        "token",
        schema.SyncRunPage,
        "Sync runs, newest first",
        errors=(400, 401, 403, 503),
        params=(LIMIT_PARAM, OFFSET_PARAM),
        description="For token holders (read or admin token); a JWT gets 403.",
    )
)
async def list_runs(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    if not caller.sees_all:
        raise ApiError(403, "forbidden", "the sync history is for token holders only")
    limit_text, offset_text = query_one(request, "limit"), query_one(request, "offset")
    limit = (
        RUNS_LIMIT_DEFAULT
        if limit_text is None
        else parse_int(limit_text, "limit", minimum=1, maximum=RUNS_LIMIT_MAX)
    )
    offset = 0 if offset_text is None else parse_int(offset_text, "offset", minimum=0, maximum=OFFSET_MAX)
    runs = await from_store(store(request).runs.list_runs(limit=limit, offset=offset))
    total = await from_store(store(request).runs.count_runs())
    return web.json_response(queries.runs_page(runs, total, limit, offset))
