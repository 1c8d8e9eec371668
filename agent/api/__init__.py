"""The agent's HTTP API: operations endpoints now; the frontend's JSON API joins here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from agent.app import Agent


def setup_api(app: web.Application, agent: Agent) -> None:
    from agent.api.ops import routes as ops_routes

    app.add_routes(ops_routes(agent))
