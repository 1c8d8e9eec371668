"""One agent's metrics: its own registry (never the global one), the event instruments fed as things
happen (cycle, bridge request and store operation durations, build info) and the fleet collector."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from agent import __version__
from agent.domain.freshness import Thresholds
from agent.domain.runs import SyncRun
from agent.sync.cycle import SyncService
from agent.telemetry import catalog as m
from agent.telemetry.collector import FleetCollector, FleetReader


def _histogram(family: m.Family, registry: CollectorRegistry) -> Histogram:
    return Histogram(family.name, family.help, family.labels, buckets=family.buckets, registry=registry)


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
