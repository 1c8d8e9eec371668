"""The agent's HTTP API: the seed backend's paths, the native `/api/v1`, operations endpoints, the
OpenAPI document and the status page.

Auth is checked per handler (agent.api.auth), except for `/metrics`, which agent.metrics registers and a
middleware guards (closed as soon as any credential is configured). The middlewares, outermost first:
CORS for the configured origins, JSON errors, the /metrics guard. Every response says
`Server: mt5-agent` (agent.api.protocol).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from agent.app import Agent


def setup_api(app: web.Application, agent: Agent) -> None:
    from agent.api import admin, ops, page, seed, v1
    from agent.api.auth import metrics_auth_middleware
    from agent.api.cors import cors_middleware
    from agent.api.errors import error_middleware
    from agent.api.openapi import build_openapi
    from agent.api.protocol import setup_protocol

    # Outermost first: CORS headers go on error answers too, so a browser can read a 401; the /metrics
    # guard raises ApiError, which the error middleware turns into JSON.
    app.middlewares.append(cors_middleware(agent.settings.cors_origin_list))
    app.middlewares.append(error_middleware)
    app.middlewares.append(metrics_auth_middleware(agent.settings))
    setup_protocol(app)

    metrics = any(r.get_info().get("path") == "/metrics" for r in app.router.resources())
    document = build_openapi(agent.settings, metrics=metrics)

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.add_routes(ops.routes(agent))
    seed.setup(app, agent)
    app.add_routes(admin.routes(agent))
    app.add_routes(v1.routes(agent))
    app.add_routes(page.routes())
    app.add_routes([web.get("/api/openapi.json", openapi)])
