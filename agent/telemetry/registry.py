"""One agent's metrics: its own registry (never the global one), the event instruments fed as things
happen (cycle, bridge request and store operation durations, build info) and the fleet collector."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
from agent.risk.book import RiskBook
from agent.sources.metaapi.stream import ConnectionState
from agent.sync.cycle import SyncService
from agent.sync.fleet import FleetSnapshot
from agent.telemetry import catalog as m
from agent.telemetry.collector import FleetCollector, FleetReader
from agent.telemetry.metaapi import MetaApiCollector
from agent.telemetry.risk import RiskCollector


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

    def __init__(
        self, *, version: str = __version__, runtime: bool = True, sources: Sequence[str] = ("bridge",)
    ) -> None:
        # The `source` label's closed set: the configured sources' names (settings, known at start).
        self.sources: tuple[str, ...] = tuple(sources) or ("bridge",)
        self.events = CollectorRegistry()
        self.sync_duration = _histogram(m.SYNC_DURATION, self.events)
        self.bridge_request_duration = _histogram(m.BRIDGE_REQUEST_DURATION, self.events)
        self.store_operation_duration = _histogram(m.STORE_OPERATION_DURATION, self.events)
        for endpoint in m.BRIDGE_ENDPOINTS:
            for source in self.sources:
                self.bridge_request_duration.labels(endpoint, source)
        for op in m.STORE_OPERATIONS_EXPORTED_AT_START:
            self.store_operation_duration.labels(op)
        info = m.AGENT_BUILD_INFO
        build = Gauge(info.name, info.help, info.labels, registry=self.events)
        build.labels(version).set(1)
        self.trade_events = _counter(m.TRADE_EVENTS, self.events)
        for t in m.EVENT_TYPES:
            self.trade_events.labels(t)
        self.trade_events_available = _gauge(m.TRADE_EVENTS_AVAILABLE, self.events)
        for source in self.sources:
            self.trade_events_available.labels(source)  # 0 until the source's health says otherwise
        self.open_positions = _gauge(m.ACCOUNT_OPEN_POSITIONS, self.events)
        self.positions_last_poll = _gauge(m.ACCOUNT_POSITIONS_LAST_POLL, self.events)
        self.poll_failures = _counter(m.POSITIONS_POLL_FAILURES, self.events)
        self.detection_delay = _histogram(m.TRADE_EVENT_DETECTION_DELAY, self.events)
        self.poll_duration = _histogram(m.POSITIONS_POLL_DURATION, self.events)
        self._polled_accounts: dict[str, set[str]] = {source: set() for source in self.sources}
        self.stream_clients = _gauge(m.STREAM_CLIENTS, self.events)
        self.stream_messages_sent = _counter(m.STREAM_MESSAGES_SENT, self.events)
        self.stream_clients_closed = _counter(m.STREAM_CLIENTS_CLOSED, self.events)
        self.stream_late_events = _counter(m.STREAM_LATE_EVENTS, self.events)
        self.stream_late_events.inc(0)  # pre-initialised: 0 until a late event is seen
        self.stream_replay_events = _histogram(m.STREAM_REPLAY_EVENTS, self.events)
        # risk (DESIGN.md 12): read from a RiskBook at scrape time once `attach_risk` gives it one;
        # registered after the fleet collector, whose text /metrics writes before its own
        self.risk = RiskCollector()
        # the children bound once: an event sent to a thousand clients counts a thousand times
        self._stream_sent = {kind: self.stream_messages_sent.labels(kind) for kind in m.STREAM_MESSAGE_TYPES}
        for reason in m.STREAM_CLOSE_REASONS:
            self.stream_clients_closed.labels(reason)
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
            self.stream_clients,
            self.stream_messages_sent,
            self.stream_clients_closed,
            self.stream_late_events,
            self.stream_replay_events,
            *collectors,
        ):
            self.registry.register(instrument)
        self._collector: FleetCollector | None = None

    def attach_metaapi(self, readers: Iterable[Callable[[], Sequence[ConnectionState]]]) -> None:
        """Export the MetaAPI sources' connection states (before `attach`: the exposition writes the event
        registry, this collector included, before the fleet collector)."""
        assert self._collector is None, "attach_metaapi before attach"
        collector = MetaApiCollector(readers)
        self.events.register(collector)
        self.registry.register(collector)

    def attach(self, service: SyncService, thresholds: Thresholds) -> None:
        """Register the fleet collector over `service.fleet` (the scrape time from the service's clock),
        and the cycle listener (once)."""
        if self._collector is None:
            self.attach_fleet(service.fleet, thresholds, lambda: service.clock())
        if self.on_run not in service.listeners:  # every source's service: its cycles' durations
            service.listeners.append(self.on_run)

    def attach_fleet(self, fleet: FleetReader, thresholds: Thresholds, clock: Callable[[], datetime]) -> None:
        """Register the collector over `fleet`, read at scrape time `clock()` (once)."""
        if self._collector is None:
            self._collector = FleetCollector(fleet, thresholds, clock)
            self.registry.register(self._collector)
            self.registry.register(self.risk)

    def attach_risk(self, book: RiskBook, fleet: Callable[[], FleetSnapshot] | None = None) -> None:
        """Export the risk families from `book` (equity sampled from `fleet` at each scrape too)."""
        self.risk.attach(book, fleet)

    @property
    def collector(self) -> FleetCollector | None:
        return self._collector

    def on_run(self, run: SyncRun) -> None:
        if run.duration_seconds is not None:
            self.sync_duration.observe(run.duration_seconds)

    def _source(self, source: str | None) -> str:
        return source if source in self.sources else self.sources[0]

    def observe_bridge_request(
        self, endpoint: str, seconds: float, ok: bool, source: str | None = None
    ) -> None:
        """`BridgeClient` observer; an endpoint outside the catalog's set is `other`."""
        label = endpoint if endpoint in m.BRIDGE_ENDPOINTS else m.OTHER
        self.bridge_request_duration.labels(label, self._source(source)).observe(seconds)

    def poll_listener(self, source: str) -> SourcePollMetrics:
        """The positions poller's listener for one source's poller."""
        return SourcePollMetrics(self, self._source(source))

    def observe_store_operation(self, operation: str, seconds: float) -> None:
        label = operation if operation in m.STORE_OPERATIONS else m.OTHER
        self.store_operation_duration.labels(label).observe(seconds)

    def timed_store(self, store: Any) -> Any:
        """`store`, reporting its operations' durations here (`observe_operations`, which every store
        backend has): the store times itself, so calls through any of its concerns are counted once."""
        store.observe_operations(self.observe_store_operation)
        return store

    # --- the positions poller's listener (agent.events.poller.PollListener) -------------------------

    def on_available(self, available: bool, source: str | None = None) -> None:
        self.trade_events_available.labels(self._source(source)).set(1 if available else 0)

    def on_round(self, seconds: float) -> None:
        self.poll_duration.observe(seconds)

    def on_accounts(self, accounts: Iterable[int], source: str | None = None) -> None:
        """Drop the per-account series of accounts the source's poller no longer polls (bounded by the
        fleet); each source's poller only drops its own accounts'."""
        polled = self._polled_accounts[self._source(source)]
        now = {str(a) for a in accounts}
        for gone in polled - now:
            for gauge in (self.open_positions, self.positions_last_poll):
                try:
                    gauge.remove(gone)
                except KeyError:
                    pass
        polled &= now

    def on_account_polled(
        self, account: int, open_positions: int, at: datetime, source: str | None = None
    ) -> None:
        label = str(account)
        self._polled_accounts[self._source(source)].add(label)
        self.open_positions.labels(label).set(open_positions)
        self.positions_last_poll.labels(label).set(at.timestamp())

    def on_account_failed(self, account: int, reason: str, source: str | None = None) -> None:
        label = reason if reason in m.POLL_FAILURE_REASONS else m.OTHER
        self.poll_failures.labels(label, self._source(source)).inc()

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None:
        for e in events:
            self.trade_events.labels(e.type.value).inc()
            if not catch_up:
                self.detection_delay.observe(max(0.0, (stored_at - e.time).total_seconds()))

    # --- the event stream's observer (agent.live.hub.StreamObserver) ----------------------------------

    def on_stream_opened(self) -> None:
        self.stream_clients.inc()

    def on_stream_closed(self, reason: str) -> None:
        self.stream_clients.dec()
        self.stream_clients_closed.labels(reason if reason in m.STREAM_CLOSE_REASONS else m.OTHER).inc()

    def on_stream_sent(self, kind: str, count: int = 1) -> None:
        child = self._stream_sent.get(kind)
        if child is None:
            child = self.stream_messages_sent.labels(m.OTHER)
        child.inc(count)

    def on_stream_replayed(self, events: int) -> None:
        self.stream_replay_events.observe(events)

    def on_stream_late(self, events: int) -> None:
        self.stream_late_events.inc(events)


class SourcePollMetrics:
    """One source's positions poller told to the agent's metrics (`AgentMetrics.poll_listener`): its
    source-level series carry the source's name, and it drops only its own accounts' series."""

    def __init__(self, metrics: AgentMetrics, source: str) -> None:
        self.metrics = metrics
        self.source = source

    def on_available(self, available: bool) -> None:
        self.metrics.on_available(available, self.source)

    def on_round(self, seconds: float) -> None:
        self.metrics.on_round(seconds)

    def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
        self.metrics.on_account_polled(account, open_positions, at, self.source)

    def on_account_failed(self, account: int, reason: str) -> None:
        self.metrics.on_account_failed(account, reason, self.source)

    def on_events_stored(self, events: Iterable[TradeEvent], stored_at: datetime, catch_up: bool) -> None:
        self.metrics.on_events_stored(events, stored_at, catch_up)

    def on_accounts(self, accounts: Iterable[int]) -> None:
        self.metrics.on_accounts(accounts, self.source)
