"""Operations endpoints: liveness, readiness, and the status summary the status page polls."""

from __future__ import annotations

from aiohttp import web

from agent.api import queries, schema
from agent.api.auth import require_read
from agent.api.common import known_scope, now, settings, store, sync_view, thresholds
from agent.api.spec import Operation, documented
from agent.store.errors import StoreError

routes = web.RouteTableDef()


@routes.get("/healthz")
@documented(
    Operation(
        "healthz",
        "Liveness: the process answers",
        "ops",
        "none",
        schema.Alive,
        "Alive",
        description="Checks nothing but the process: for a liveness probe (restart when it fails).",
    )
)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


@routes.get("/readyz")
@documented(
    Operation(
        "readyz",
        "Ready: the store answers and a sync cycle has run",
        "ops",
        "none",
        schema.Ready,
        "Ready",
        description="For a readiness probe or a load balancer: 503 with the problems until the store "
        "answers and a first sync cycle has run.",
        responses={503: ("Not ready, with the problems", schema.Ready)},
    )
)
async def readyz(request: web.Request) -> web.Response:
    try:
        await store(request).ping()
        store_up = True
    except StoreError:
        store_up = False
    ready, body = queries.readiness(store_up=store_up, cycle_ran=sync_view(request).last_run is not None)
    return web.json_response(body, status=200 if ready else 503)


@routes.get("/api/v1/status")
@documented(
    Operation(
        "status",
        "Bridge, store, last sync and freshness counts",
        "v1",
        "read",
        schema.Status,
        "Bridge, store and last sync at a glance (what the status page shows)",
        errors=(401, 503),
        description="Answers even when the store is down (`store.up` false, no counts). A client JWT "
        "gets its own accounts' counts.",
    )
)
async def get_status(request: web.Request) -> web.Response:
    """Answers even when the store is down (`store.up` false; no counts while its accounts are unknown)."""
    caller = require_read(request, settings(request))
    client_id = None if caller.sees_all else caller.client_id
    found = await known_scope(request, client_id)
    t, limits = now(request), thresholds(request)
    fresh = None if found is None else found.freshness(t, limits)
    return web.json_response(queries.status_of(sync_view(request), fresh, t, limits))
