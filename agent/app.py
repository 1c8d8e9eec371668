"""Wiring: settings -> store, bridge source, sync service and fleet, scheduler, HTTP app (API, metrics).

The agent starts even when the store or the bridge is down: it keeps serving its own metrics and
health, and each cycle retries by itself. When scheduling, the store is opened by the first cycle (under
the cycle lock, so nothing else opens it concurrently), never before the HTTP server listens: /healthz and
/metrics answer at once even while MongoDB is unreachable. Bridge reachability is probed on its own period
(`agent.sync.probe`), started and stopped with the scheduler.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from opentelemetry.trace import TracerProvider

from agent.api import provide, setup_api
from agent.config import SECRET_FIELDS, Settings
from agent.events.poller import PositionsPoller
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from agent.sync.fleet import Fleet
from agent.sync.probe import SourceProber
from agent.telemetry.exposition import add_metrics_route
from agent.telemetry.logs import register_secrets
from agent.telemetry.registry import AgentMetrics
from agent.telemetry.tracing import client_trace_config, setup_tracing_middleware

log = logging.getLogger("mt5_agent")


@dataclass
class Agent:
    """Everything a request handler or collector may need, in one place."""

    settings: Settings
    store: Store
    bridge: BridgeClient
    service: SyncService
    scheduler: object | None = None  # agent.sync.scheduler.SyncScheduler when scheduling
    prober: SourceProber | None = None  # started with the scheduler
    poller: PositionsPoller | None = None  # positions and trade events; started with the scheduler
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    metrics: AgentMetrics | None = None  # this agent's own Prometheus registry (never the global one)
    tracer_provider: TracerProvider | None = None  # None: the global provider

    @property
    def fleet(self) -> Fleet:
        """The read model of the fleet (accounts, failures, status) the API and the metrics read."""
        return self.service.fleet


def build_agent(
    settings: Settings,
    *,
    store: Store | None = None,
    bridge: BridgeClient | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Agent:
    register_secrets(settings.secret(name) for name in SECRET_FIELDS)
    metrics = AgentMetrics()
    store = metrics.timed_store(
        store or open_store(settings.store_url, mongo_database=settings.mongo_database)
    )
    bridge = bridge or BridgeClient(
        settings.bridge_url,
        token=settings.secret("bridge_token"),
        timeout=settings.request_timeout,
        connection_limit=max(settings.concurrency, 10),
        max_response_bytes=settings.max_response_bytes,
        clock_skew_tolerance=settings.clock_skew_tolerance,
        observer=metrics.observe_bridge_request,
        trace_configs=[client_trace_config(tracer_provider)],
    )
    source = BridgeSource(bridge, use_batch=settings.use_batch, concurrency=settings.concurrency)
    service = SyncService(
        store,
        source,
        cycle_deadline=settings.cycle_deadline,
        health_retries=settings.health_retries,
        health_backoff=settings.health_backoff,
        tracer_provider=tracer_provider,
    )
    metrics.attach(service, settings.thresholds)
    return Agent(
        settings=settings,
        store=store,
        bridge=bridge,
        service=service,
        metrics=metrics,
        tracer_provider=tracer_provider,
    )


async def open_agent(agent: Agent) -> None:
    """Open the store and load state; a store that is down now is retried by every cycle."""
    await agent.service.ensure_ready()


async def close_agent(agent: Agent) -> None:
    if agent.poller is not None:
        await agent.poller.stop()  # before the store closes: a running round finishes its writes
    if agent.prober is not None:
        await agent.prober.stop()
    if agent.scheduler is not None:
        await agent.scheduler.stop()  # type: ignore[attr-defined]
    await agent.bridge.close()
    try:
        await agent.store.close()
    except Exception:  # closing must never mask the shutdown itself
        log.exception("error closing the store")


def start_background(agent: Agent) -> None:
    """Scheduler (its first tick runs a cycle at once, which opens the store and loads state) and the
    bridge prober. Returns at once: nothing here waits on the store or the bridge."""
    from agent.sync.scheduler import SyncScheduler

    settings = agent.settings
    agent.scheduler = scheduler = SyncScheduler(agent.service, settings.parsed_schedule)
    scheduler.start()
    agent.prober = SourceProber(
        agent.service.source,
        agent.service.fleet,
        interval=settings.probe_interval,
        timeout=settings.request_timeout,
    )
    agent.prober.start()
    agent.poller = build_poller(agent)
    if agent.poller is not None:
        agent.poller.start()


def build_poller(agent: Agent) -> PositionsPoller | None:
    """The positions poller over the fleet's accounts, on its own period (None: MT5_AGENT_POSITIONS_INTERVAL
    is off). It waits for the fleet to be loaded (the sync's first cycle opens the store)."""
    settings = agent.settings
    interval = settings.positions_interval_seconds
    if interval is None:
        log.info("positions poller off (MT5_AGENT_POSITIONS_INTERVAL)")
        return None
    fleet = agent.service.fleet
    return PositionsPoller(
        agent.store,
        agent.service.source,
        lambda: fleet.snapshot().accounts.keys(),
        interval=interval,
        concurrency=settings.concurrency,
        deadline=min(settings.request_timeout, max(2.0 * interval, 2.0)),
        retention=timedelta(days=settings.events_retention),
        listener=agent.metrics,
        ready=lambda: fleet.loaded,
    )


def create_app(agent: Agent, *, schedule: bool = True) -> web.Application:
    app = web.Application()
    setup_tracing_middleware(app, agent.tracer_provider)
    if agent.metrics is not None:
        add_metrics_route(app, agent.metrics)  # before the API: its OpenAPI document lists /metrics
    provide(app, settings=agent.settings, store=agent.store, sync=agent.service, fleet=agent.service.fleet)
    setup_api(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if schedule:
            start_background(agent)
        else:
            await open_agent(agent)
        yield
        await close_agent(agent)

    app.cleanup_ctx.append(lifecycle)
    return app
