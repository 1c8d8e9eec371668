"""One agent's metrics: its own registry (never the global one), the event instruments fed as things
happen (cycle, bridge request and store operation durations, build info) and the fleet collector."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from agent import __version__
from agent.domain.freshness import Thresholds
from agent.domain.runs import SyncRun
from agent.domain.trades import TradeEvent
from agent.sync.cycle import SyncService
from agent.telemetry import catalog as m
from agent.telemetry.collector import FleetCollector, FleetReader


def _histogram(family: m.Family, registry: CollectorRegistry) -> Histogram:
    return Histogram(family.name, family.help, family.labels, buckets=family.buckets, registry=registry)


def _counter(family: m.Family, registry: CollectorRegistry) -> Counter:
    return Counter(family.name, family.help, family.labels, registry=registry)


def _gauge(family: m.Family, registry: CollectorRegistry) -> Gauge:
    return Gauge(family.name, family.help, family.labels, registry=registry)


class AgentMetrics:
    """Built before the app so the bridge client and the store wrapper can report into it.

    `events` holds the event instruments only; `registry` holds them and, once attached, the fleet
    collector (in that order): /metrics writes `events` with prometheus_client and the collector's
    families with its own text path, the same bytes as `registry` encoded whole."""

    def __init__(self, *, version: str = __version__, runtime: bool = True) -> None:
        self.events = CollectorRegistry()
        self.sync_duration = _histogram(m.SYNC_DURATION, self.events)
        self.bridge_request_duration = _histogram(m.BRIDGE_REQUEST_DURATION, self.events)
        self.store_operation_duration = _histogram(m.STORE_OPERATION_DURATION, self.events)
        for endpoint in m.BRIDGE_ENDPOINTS:
            self.bridge_request_duration.labels(endpoint)
        for op in m.STORE_OPERATIONS_EXPORTED_AT_START:
            self.store_operation_duration.labels(op)
        info = m.AGENT_BUILD_INFO
        build = Gauge(info.name, info.help, info.labels, registry=self.events)
        build.labels(version).set(1)
        self.trade_events = _counter(m.TRADE_EVENTS, self.events)
        for t in m.EVENT_TYPES:
            self.trade_events.labels(t)
        self.trade_events_available = _gauge(m.TRADE_EVENTS_AVAILABLE, self.events)
        self.open_positions = _gauge(m.ACCOUNT_OPEN_POSITIONS, self.events)
        self.positions_last_poll = _gauge(m.ACCOUNT_POSITIONS_LAST_POLL, self.events)
        self.poll_failures = _counter(m.POSITIONS_POLL_FAILURES, self.events)
        self.detection_delay = _histogram(m.TRADE_EVENT_DETECTION_DELAY, self.events)
        self.poll_duration = _histogram(m.POSITIONS_POLL_DURATION, self.events)
        self._polled_accounts: set[str] = set()
        # The process and platform series every exporter has (process_*, python_*), as node_exporter and
        # prometheus_client's default registry export them: ops dashboards expect them.
        # `runtime=False`: without them, for tests that compare two encodings byte for byte (CPU time moves).
        collectors = (
            (
                ProcessCollector(registry=self.events),
                PlatformCollector(registry=self.events),
                GCCollector(registry=self.events),
            )
            if runtime
            else ()
        )
        self.registry = CollectorRegistry()
        for instrument in (
            self.sync_duration,
            self.bridge_request_duration,
            self.store_operation_duration,
            build,
            self.trade_events,
            self.trade_events_available,
            self.open_positions,
            self.positions_last_poll,
            self.poll_failures,
            self.detection_delay,
            self.poll_duration,
            *collectors,
        ):
            self.registry.register(instrument)
        self._collector: FleetCollector | None = None

    def attach(self, service: SyncService, thresholds: Thresholds) -> None:
        """Register the fleet collector over `service.fleet` (the scrape time from the service's clock),
        and the cycle listener (once)."""
        if self._collector is not None:
            return
        self.attach_fleet(service.fleet, thresholds, lambda: service.clock())
        service.listeners.append(self.on_run)

    def attach_fleet(self, fleet: FleetReader, thresholds: Thresholds, clock: Callable[[], datetime]) -> None:
        """Register the collector over `fleet`, read at scrape time `clock()` (once)."""
        if self._collector is None:
            self._collector = FleetCollector(fleet, thresholds, clock)
            self.registry.register(self._collector)

    @property
    def collector(self) -> FleetCollector | None:
        return self._collector

    def on_run(self, run: SyncRun) -> None:
        if run.duration_seconds is not None:
            self.sync_duration.observe(run.duration_seconds)

    def observe_bridge_request(self, endpoint: str, seconds: float, ok: bool) -> None:
        """`BridgeClient` observer; an endpoint outside the catalog's set is `other`."""
        label = endpoint if endpoint in m.BRIDGE_ENDPOINTS else m.OTHER
        self.bridge_request_duration.labels(label).observe(seconds)

    def observe_store_operation(self, operation: str, seconds: float) -> None:
        label = operation if operation in m.STORE_OPERATIONS else m.OTHER
        self.store_operation_duration.labels(label).observe(seconds)

    def timed_store(self, store: Any) -> Any:
        """`store`, reporting its operations' durations here (`observe_operations`, which every store
        backend has): the store times itself, so calls through any of its concerns are counted once."""
        store.observe_operations(self.observe_store_operation)
        return store

    # --- the positions poller's listener (agent.events.poller.PollListener) -------------------------

    def on_available(self, available: bool) -> None:
        self.trade_events_available.set(1 if available else 0)

    def on_round(self, seconds: float) -> None:
        self.poll_duration.observe(seconds)

    def on_accounts(self, accounts: Iterable[int]) -> None:
        """Drop the per-account series of accounts no longer polled (bounded by the fleet)."""
        now = {str(a) for a in accounts}
        for gone in self._polled_accounts - now:
            for gauge in (self.open_positions, self.positions_last_poll):
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        self._polled_accounts &= now

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
        label = str(account)
        self._polled_accounts.add(label)
        self.open_positions.labels(label).set(open_positions)
        self.positions_last_poll.labels(label).set(at.timestamp())

    def on_account_failed(self, account: int, reason: str) -> None:
        self.poll_failures.labels(reason if reason in m.POLL_FAILURE_REASONS else m.OTHER).inc()

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None:
        for e in events:
            self.trade_events.labels(e.type.value).inc()
            if not catch_up:
                self.detection_delay.observe(max(0.0, (stored_at - e.time).total_seconds()))
