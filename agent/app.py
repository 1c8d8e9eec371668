"""Wiring: settings -> store, sources, sync services and fleet, scheduler, HTTP app (API, metrics).

Several sources (`[[sources]]`, DESIGN.md section 10): one `SyncService`, one `SourceProber` and one
`PositionsPoller` per source, all over the one store and the one fleet. The scheduler starts one cycle
task per source on each tick, each with its own deadline and retries, so a slow or dead source never
delays the others' cycles or their freshness. A login two sources list is held by the first to list it
(`Fleet.claim`), counted and logged, never merged. `MT5_AGENT_BRIDGE_URL` alone is one bridge source
named `bridge`: the single-source agent is wired and behaves as before.

The agent starts even when the store or the bridge is down: it keeps serving its own metrics and
health, and each cycle retries by itself. When scheduling, the store is opened by the first cycle (under
the cycle lock, so nothing else opens it concurrently), never before the HTTP server listens: /healthz and
/metrics answer at once even while MongoDB is unreachable. Bridge reachability is probed on its own period
(`agent.sync.probe`), started and stopped with the scheduler.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from opentelemetry.trace import TracerProvider

from agent.analytics.equity import EquityRecorder
from agent.api import provide, setup_api
from agent.api.admin import SHARD_MONITOR, SYNC_SERVICES
from agent.api.stream import event_frame, setup_stream
from agent.config import SECRET_FIELDS, ConfigError, Settings, SourceConfig
from agent.events.poller import PollListener, PositionsPoller
from agent.live.hub import EventHub
from agent.live.listeners import PollListeners
from agent.risk.book import RiskBook
from agent.risk.book import tap as tap_positions
from agent.risk.correlation import CorrelationTracker
from agent.sources.base import Source
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import StoreGate, SyncService
from agent.sync.fleet import Fleet
from agent.sync.probe import SourceProber
from agent.sync.shards import CONFLICT_KINDS, OwnedFleetView, ShardedSource, ShardMonitor, unwrap
from agent.telemetry.exposition import add_metrics_route
from agent.telemetry.logs import redact, register_secrets
from agent.telemetry.registry import AgentMetrics
from agent.telemetry.tracing import client_trace_config, setup_tracing_middleware

log = logging.getLogger("mt5_agent")


@dataclass
class Agent:
    """Everything a request handler or collector may need, in one place. `service`, `bridge`, `prober`
    and `poller` are the first source's (the only one's, by default); `services`, `probers` and `pollers`
    hold every source's, in configuration order."""

    settings: Settings
    store: Store
    bridge: BridgeClient | None  # the first bridge source's client (None: no bridge source)
    service: SyncService
    scheduler: object | None = None  # agent.sync.scheduler.SyncScheduler when scheduling
    services: list[SyncService] = field(default_factory=list)
    probers: list[SourceProber] = field(default_factory=list)  # started with the scheduler
    pollers: list[PositionsPoller] = field(default_factory=list)  # positions and trade events
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    metrics: AgentMetrics | None = None  # this agent's own Prometheus registry (never the global one)
    tracer_provider: TracerProvider | None = None  # None: the global provider
    hub: EventHub | None = None  # stored trade events to the live streams (WS /api/v1/stream)
    risk: RiskBook | None = None  # the risk metrics' read model (fed by the poller's positions writes)
    correlation: CorrelationTracker | None = None  # open positions' correlation, into the risk book
    shard_monitor: ShardMonitor | None = None  # MT5_AGENT_SHARD: this shard's lease and its conflicts
    equity: EquityRecorder | None = None  # recorded equity history (fed after each sync cycle)

    def __post_init__(self) -> None:
        if not self.services:
            self.services = [self.service]

    @property
    def fleet(self) -> Fleet:
        """The read model of the fleet (accounts, failures, status) the API and the metrics read."""
        return self.service.fleet

    @property
    def sources(self) -> list[Source]:
        return [s.source for s in self.services]

    @property
    def prober(self) -> SourceProber | None:
        return self.probers[0] if self.probers else None

    @property
    def poller(self) -> PositionsPoller | None:
        return self.pollers[0] if self.pollers else None

    @poller.setter
    def poller(self, poller: PositionsPoller | None) -> None:
        self.pollers = ([poller] if poller is not None else []) + self.pollers[1:]


def build_agent(
    settings: Settings,
    *,
    store: Store | None = None,
    bridge: BridgeClient | None = None,
    tracer_provider: TracerProvider | None = None,
    metaapi_factory: object | None = None,
) -> Agent:
    """`bridge` replaces the first bridge source's client; `metaapi_factory` the MetaAPI SDK (tests: the
    cloud cannot run here). Raises ConfigError (one line) when a source cannot be built."""
    configs = settings.source_configs
    register_secrets([*(settings.secret(name) for name in SECRET_FIELDS), *settings.source_secrets()])
    metrics = AgentMetrics(sources=[c.name for c in configs])
    store = metrics.timed_store(
        store or open_store(settings.store_url, mongo_database=settings.mongo_database)
    )
    fleet = Fleet()
    gate = StoreGate(settings.store_refresh)
    shard = settings.shard_spec
    if shard is not None:
        fleet.owns = shard.owns  # the others' accounts: mirrored from the store, never synced or pruned here
    services: list[SyncService] = []
    first_client: BridgeClient | None = None
    for config in configs:
        fleet.register_source(config.name)
        if config.kind == "bridge":
            client = bridge if bridge is not None and first_client is None else None
            client = client or _bridge_client(settings, config, metrics, tracer_provider)
            first_client = first_client or client
            concurrency = config.concurrency or settings.concurrency
            source: Source = BridgeSource(
                client, name=config.name, use_batch=config.use_batch, concurrency=concurrency
            )
        else:
            source = _metaapi_source(config, metaapi_factory)
        if shard is not None:
            source = ShardedSource(source, shard)  # lists owned logins only: sync, poller and events
        services.append(
            SyncService(
                store,
                source,
                cycle_deadline=settings.cycle_deadline,
                health_retries=settings.health_retries,
                health_backoff=settings.health_backoff,
                tracer_provider=tracer_provider,
                fleet=fleet,
                gate=gate,
                prune_unclaimed=len(configs) == 1,
            )
        )
    service = services[0]
    metaapi = [s.source for s in services if s.source.kind == "metaapi"]
    if metaapi:
        metrics.attach_metaapi([source.connection_states for source in metaapi])  # type: ignore[attr-defined]
    owned = fleet if shard is None else OwnedFleetView(fleet, shard.owns)  # what the metrics export
    monitor = None
    if shard is not None:
        metrics.attach_fleet(owned, settings.thresholds, lambda: service.clock())
        monitor = ShardMonitor(
            store.shards,
            shard,
            heartbeat=settings.shard_heartbeat,
            refresh=settings.store_refresh,
            on_refresh=service.ensure_ready,
        )
        _shard_gauges(metrics, monitor)
    for other in services:
        metrics.attach(other, settings.thresholds)
    risk = RiskBook()  # risk metrics: open positions via the poller's store writes, equity after each sync
    for other in services:
        other.listeners.append(lambda _run: risk.observe_fleet(owned.snapshot()))
        levels = getattr(other.source, "broker_levels", None)  # the broker's margin levels (bridges)
        if isinstance(levels, dict):
            risk.levels_from(levels)
    bridges = {s.source.name: b.client for s in services if isinstance(b := unwrap(s.source), BridgeSource)}
    correlation = CorrelationTracker(risk, owned.snapshot, bridges)  # bars via each bridge's `rates`
    metrics.attach_risk(risk, owned.snapshot)
    equity = EquityRecorder(  # equity history: sampled after each cycle, written off the cycle
        store.equity,
        sample_seconds=settings.equity_sample_seconds,
        retention=timedelta(days=settings.equity_retention),
    )
    for other in services:
        other.listeners.append(lambda _run: equity.observe(owned.snapshot().accounts.values()))
    hub = EventHub(
        store.events,
        encode=event_frame,
        owner=lambda account: getattr(fleet.snapshot().accounts.get(account), "client_id", None),
        observer=metrics,
        tail=None if shard is None else min(1.0, settings.store_refresh),  # every shard's events
    )
    return Agent(
        shard_monitor=monitor,
        hub=hub,
        risk=risk,
        correlation=correlation,
        equity=equity,
        settings=settings,
        store=store,
        bridge=first_client,
        service=service,
        services=services,
        metrics=metrics,
        tracer_provider=tracer_provider,
    )


def _shard_gauges(metrics: AgentMetrics, monitor: ShardMonitor) -> None:
    """The shard's own series (agent.telemetry.catalog.SHARD_FAMILIES), read from the monitor at scrape."""
    from prometheus_client import Gauge

    from agent.telemetry import catalog as m

    def gauge(family: m.Family) -> Gauge:
        g = Gauge(family.name, family.help, family.labels, registry=metrics.events)
        metrics.registry.register(g)
        return g

    gauge(m.SHARD_INDEX).set(monitor.shard.index)
    gauge(m.SHARD_COUNT).set(monitor.shard.count)
    gauge(m.SHARD_LEASE_UP).set_function(lambda: 1.0 if monitor.lease_up else 0.0)
    conflicts = gauge(m.SHARD_CONFLICTS)

    def count(kind: str) -> Callable[[], float]:
        return lambda: float(len(monitor.conflicts[kind]))

    for kind in CONFLICT_KINDS:
        conflicts.labels(kind).set_function(count(kind))


def _bridge_client(
    settings: Settings, config: SourceConfig, metrics: AgentMetrics, tracer_provider: TracerProvider | None
) -> BridgeClient:
    name = config.name

    def observe(endpoint: str, seconds: float, ok: bool) -> None:
        metrics.observe_bridge_request(endpoint, seconds, ok, source=name)

    concurrency = config.concurrency or settings.concurrency
    return BridgeClient(
        config.url or settings.bridge_url,
        token=config.token.get_secret_value() if config.token is not None else None,
        timeout=settings.request_timeout,
        connection_limit=max(concurrency, 10),
        max_response_bytes=settings.max_response_bytes,
        clock_skew_tolerance=settings.clock_skew_tolerance,
        observer=observe,
        trace_configs=[client_trace_config(tracer_provider)],
    )


def _metaapi_source(config: SourceConfig, factory: object | None) -> Source:
    from agent.sources.metaapi import MetaApiConfigError, MetaApiSource

    try:
        return MetaApiSource(config.metaapi, name=config.name, factory=factory, redact=redact)  # type: ignore[arg-type]
    except MetaApiConfigError as exc:  # the SDK (optional extra) is not installed
        raise ConfigError(f"invalid setting sources: source {config.name!r}: {exc}") from None


async def verify_sources(agent: Agent) -> None:
    """At start: each MetaAPI source checks its accounts and token with the cloud once (a bad one is a
    one-line ConfigError naming the source and setting; a network failure is left to the retries)."""
    from agent.sources.metaapi import MetaApiConfigError, MetaApiSource

    for wrapped in agent.sources:
        source = unwrap(wrapped)
        if isinstance(source, MetaApiSource):
            try:
                await source.verify()
            except MetaApiConfigError as exc:
                raise ConfigError(f"invalid setting sources: source {source.name!r}: {exc}") from None


async def open_agent(agent: Agent) -> None:
    """Open the store and load state; a store that is down now is retried by every cycle."""
    await agent.service.ensure_ready()


async def close_agent(agent: Agent) -> None:
    """Stop every part, in order (the writers before the store closes). Each step runs even when an
    earlier one failed: a part that ends with an error is logged, and the store is still closed."""
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    if agent.hub is not None:
        steps.append(("the event hub", agent.hub.stop))  # idempotent: the app's lifecycle stopped it first
    if agent.correlation is not None:
        steps.append(("the correlation job", agent.correlation.stop))
    if agent.shard_monitor is not None:
        steps.append(("the shard monitor", agent.shard_monitor.stop))
    # the pollers before the store closes: a running round finishes its writes
    steps += [("a positions poller", poller.stop) for poller in agent.pollers]
    steps += [("a source prober", prober.stop) for prober in agent.probers]
    if agent.scheduler is not None:
        steps.append(("the sync scheduler", agent.scheduler.stop))  # type: ignore[attr-defined]
    if agent.equity is not None:  # before the store closes: the points of the last cycle are written
        steps.append(("the equity writer", agent.equity.stop))
    if agent.bridge is not None:
        steps.append(("the bridge client", agent.bridge.close))
    # every source's client (the first bridge's is closed already: idempotent)
    steps += [(f"source {source.name}", source.close) for source in agent.sources]
    steps.append(("the store", agent.store.close))
    for what, stop in steps:
        try:
            await stop()
        except Exception:  # closing must never mask the shutdown itself, nor skip the steps after it
            log.exception("error stopping %s", what)


def start_background(agent: Agent) -> None:
    """Scheduler (its first tick runs a cycle at once, which opens the store and loads state) and the
    bridge prober. Returns at once: nothing here waits on the store or the bridge."""
    from agent.sync.scheduler import SyncScheduler

    settings = agent.settings
    agent.scheduler = scheduler = SyncScheduler(agent.services, settings.parsed_schedule)
    scheduler.start()
    agent.probers = [
        SourceProber(
            service.source,
            service.fleet,
            interval=settings.probe_interval,
            timeout=settings.request_timeout,
        )
        for service in agent.services
    ]
    for prober in agent.probers:
        prober.start()
    if agent.shard_monitor is not None:
        agent.shard_monitor.start()
    agent.pollers = [p for p in (build_poller(agent, s) for s in agent.services) if p is not None]
    for poller in agent.pollers:
        poller.start()
    if agent.correlation is not None:
        agent.correlation.start()


def build_poller(agent: Agent, service: SyncService | None = None) -> PositionsPoller | None:
    """The positions poller over the accounts one source holds (the first source's by default), on its
    own period (None: MT5_AGENT_POSITIONS_INTERVAL is off). It waits for the fleet to be loaded (the
    sync's first cycle opens the store)."""
    settings = agent.settings
    interval = settings.positions_interval_seconds
    if interval is None:
        log.info("positions poller off (MT5_AGENT_POSITIONS_INTERVAL)")
        return None
    service = service or agent.service
    fleet, source = service.fleet, service.source
    owns = fleet.owns  # sharded: the other shards' accounts (mirrored from the store) are theirs to poll
    if len(agent.services) == 1 and agent.settings.shard_spec is None:
        accounts: Callable[[], Iterable[int]] = lambda: fleet.snapshot().accounts.keys()  # noqa: E731
    elif len(agent.services) == 1:
        accounts = lambda: [a for a in fleet.snapshot().accounts if owns(a)]  # noqa: E731
    else:
        accounts = lambda: [  # noqa: E731
            a for a, st in fleet.snapshot().accounts.items() if st.source == source.name and owns(a)
        ]
    return PositionsPoller(
        agent.store if agent.risk is None else tap_positions(agent.store, agent.risk),
        source,
        accounts,
        interval=interval,
        concurrency=settings.concurrency,
        deadline=min(settings.request_timeout, max(2.0 * interval, 2.0)),
        retention=timedelta(days=settings.events_retention),
        listener=poll_listener(agent, source.name if len(agent.services) > 1 else None),
        ready=lambda: fleet.loaded,
        values=lambda a: st.values if (st := fleet.snapshot().accounts.get(a)) is not None else None,
    )


def poll_listener(agent: Agent, source: str | None = None) -> PollListener | None:
    """The metrics (the source's view of them) and the event hub, both told what the poller does."""
    metrics = agent.metrics.poll_listener(source) if agent.metrics and source else agent.metrics
    listeners = [x for x in (metrics, agent.hub) if x is not None]
    return PollListeners(*listeners) if len(listeners) > 1 else (listeners[0] if listeners else None)


def create_app(agent: Agent, *, schedule: bool = True) -> web.Application:
    app = web.Application()
    if agent.shard_monitor is not None:
        app.middlewares.append(_shard_readiness(agent.shard_monitor))
    setup_tracing_middleware(app, agent.tracer_provider)
    if agent.metrics is not None:
        add_metrics_route(app, agent.metrics)  # before the API: its OpenAPI document lists /metrics
    provide(app, settings=agent.settings, store=agent.store, sync=agent.service, fleet=agent.service.fleet)
    if len(agent.services) > 1 or any(s.kind == "metaapi" for s in agent.sources):
        # the manual sync runs every source's cycle; /api/admin/mt5-health lists the sources
        app[SYNC_SERVICES] = agent.services
    if agent.shard_monitor is not None:
        app[SHARD_MONITOR] = agent.shard_monitor  # /api/admin/mt5-health says which shard and its conflicts
    setup_api(app)
    if agent.hub is not None:
        setup_stream(app, agent.hub)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await verify_sources(agent)
        if schedule:
            start_background(agent)
        else:
            await open_agent(agent)
        if agent.hub is not None:
            agent.hub.start()  # it reads the store's latest id once the store answers
        yield
        await close_agent(agent)  # the hub first: its streams are closed (1001) already

    app.cleanup_ctx.append(lifecycle)
    return app


def _shard_readiness(monitor: ShardMonitor) -> Any:
    """/readyz also says when another live shard holds this shard's index (503: the two sync the same
    accounts). A count that disagrees is logged and counted but leaves readiness alone: during a
    change of N every shard sees one, and a rollout waiting for readiness would never finish."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        problem = monitor.problem()
        if request.path != "/readyz" or problem is None or not isinstance(response, web.Response):
            return response
        try:
            body = json.loads(response.body or b"{}")  # type: ignore[arg-type]
        except ValueError:
            return response
        body["ready"] = False
        body["problems"] = [*body.get("problems", []), problem]
        return web.json_response(body, status=503)

    return middleware
