"""Operations endpoints: liveness and readiness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from agent.store.base import StoreError

if TYPE_CHECKING:
    from agent.app import Agent


def routes(agent: Agent) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(request: web.Request) -> web.Response:
        """Ready = the store answers now and at least one cycle has run."""
        problems: list[str] = []
        try:
            await agent.store.ping()
        except StoreError:
            # No error text here: /readyz is unauthenticated and store errors can name hosts or paths.
            problems.append("store unreachable")
        if agent.service.state.last_run is None:
            problems.append("no sync cycle has run yet")
        status = 200 if not problems else 503
        return web.json_response({"ready": not problems, "problems": problems}, status=status)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]
