"""Prometheus metrics (filled in by the observability work); the app calls setup_metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from agent.app import Agent


def setup_metrics(app: web.Application, agent: Agent) -> None:
    return None
