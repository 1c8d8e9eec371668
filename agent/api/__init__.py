"""The agent's HTTP API: the seed backend's paths, the native `/api/v1`, operations endpoints, the
OpenAPI document and the status page.

One registration style: each area module (accounts, runs, admin, seed, ops, page, openapi) holds a
`routes = web.RouteTableDef()`, and `setup_api` adds them all. Handlers read what they need from
`request.app[...]` (the typed keys of agent.api.keys, set by the composition root); nothing is closed
over. What they answer is computed by agent.api.queries, which knows no HTTP; whole-fleet answers are
assembled from agent.api.fleetview's cached pieces (an account serialised once per change).

Auth is checked per handler (agent.api.auth), except for `/metrics`, which the telemetry layer registers
and a middleware guards (closed as soon as any credential is configured). The middlewares, outermost
first: CORS for the configured origins, JSON errors, the /metrics guard. Every response says
`Server: mt5-agent` (agent.api.protocol).
"""

from __future__ import annotations

from aiohttp import web

from agent.api import accounts, admin, analytics, ops, page, runs, seed, story, stream, trades
from agent.api import openapi as openapi_area
from agent.api.auth import metrics_auth_middleware
from agent.api.cors import cors_middleware
from agent.api.errors import error_middleware
from agent.api.fleetview import FleetView
from agent.api.keys import FLEET, FLEET_VIEW, MANUAL_CYCLES, OPENAPI_DOCUMENT, SETTINGS, STORE, SYNC
from agent.api.protocol import setup_protocol
from agent.config import Settings
from agent.store.base import Store
from agent.sync.cycle import SyncService
from agent.sync.fleet import Fleet

AREAS = (ops, seed, admin, accounts, trades, analytics, stream, runs, story, page, openapi_area)


def provide(
    app: web.Application, *, settings: Settings, store: Store, sync: SyncService, fleet: Fleet
) -> None:
    """Put what the handlers read into the app (the composition root's call)."""
    app[SETTINGS] = settings
    app[STORE] = store
    app[SYNC] = sync
    app[FLEET] = fleet


def setup_api(app: web.Application) -> None:
    """Middlewares, hooks and every area's routes; then the OpenAPI document of the whole app (so
    register /metrics before). The app must hold SETTINGS, STORE, SYNC and FLEET (`provide`)."""
    missing = [k for k in (SETTINGS, STORE, SYNC, FLEET) if k not in app]
    if missing:
        raise RuntimeError(f"setup_api: the app lacks {', '.join(map(repr, missing))} (agent.api.keys)")
    settings = app[SETTINGS]
    # Outermost first: CORS headers go on error answers too, so a browser can read a 401; the /metrics
    # guard raises ApiError, which the error middleware turns into JSON.
    app.middlewares.append(cors_middleware(settings.cors_origin_list))
    app.middlewares.append(error_middleware)
    app.middlewares.append(metrics_auth_middleware(settings))
    setup_protocol(app)

    app[MANUAL_CYCLES] = set()
    app[FLEET_VIEW] = FleetView()
    app.on_shutdown.append(admin.stop_manual_cycles)
    for area in AREAS:
        app.add_routes(area.routes)
    app[OPENAPI_DOCUMENT] = openapi_area.document_bytes(app, settings)
