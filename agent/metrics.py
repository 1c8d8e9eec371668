"""SHIM(issue 11): the metrics moved to agent.telemetry (catalog, collector, exposition, registry,
store_timing); these re-exports and `setup_metrics` go when the lead removes the shims."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.telemetry.catalog import BRIDGE_ENDPOINTS, STORE_OPERATIONS  # noqa: F401
from agent.telemetry.collector import FleetCollector, margin_level_ratio  # noqa: F401
from agent.telemetry.exposition import add_metrics_route, metrics_handler, render  # noqa: F401
from agent.telemetry.registry import AgentMetrics
from agent.telemetry.store_timing import TimedStore  # noqa: F401

AgentCollector = FleetCollector


def setup_metrics(app: web.Application, agent: Any) -> None:
    """Serve /metrics from the agent's own registry (created here if build_agent did not)."""
    if agent.metrics is None:
        agent.metrics = AgentMetrics()
    agent.metrics.attach(agent.service, agent.settings.thresholds)
    add_metrics_route(app, agent.metrics)
