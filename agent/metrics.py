"""Prometheus metrics (DESIGN.md section 7) on a registry owned by each agent, never the global one.

Account values, freshness, failure counts and bridge/store status come from one collector that reads
`SyncService.state` at scrape time: a value that was not refreshed keeps its old timestamp and its age
keeps growing, so a cached value is never presented as fresh. Events (cycle and request durations)
are ordinary prometheus_client histograms fed by the sync listener, the bridge observer and the
store wrapper. Every label value comes from a bounded set, except the info metric's descriptive labels.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import __version__
from agent.freshness import STATES, Thresholds, age_seconds
from agent.models import REASONS, RUN_RESULTS, DataSource, SyncRun

if TYPE_CHECKING:
    from agent.app import Agent
    from agent.store.base import Store
    from agent.sync import SyncService

log = logging.getLogger("mt5_agent.metrics")

# Closed label sets. An endpoint or operation outside them is reported as "other", so a new call added
# elsewhere can never create unbounded series.
BRIDGE_ENDPOINTS: tuple[str, ...] = ("health", "summary", "info", "live", "balance")
STORE_OPERATIONS: tuple[str, ...] = (
    "open",
    "ping",
    "write_cycle",
    "record_run",
    "list_runs",
    "count_runs",
    "get_accounts",
    "get_account",
    "get_sync_states",
    "put_account_documents",
)
DATA_SOURCES: tuple[str, ...] = tuple(s.value for s in DataSource)
RUN_OUTCOMES: tuple[str, ...] = ("live", "stored", "failed")

# A cycle takes tens of milliseconds (a few accounts, batch) to minutes (thousands, one call each).
SYNC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# One bridge call: a few ms on loopback up to the 30 s request timeout.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

VALUE_GAUGES: tuple[tuple[str, str, str], ...] = (
    # (metric, AccountValues field, what it is)
    ("mt5_account_balance", "balance", "Balance in the account currency"),
    ("mt5_account_equity", "equity", "Equity in the account currency"),
    ("mt5_account_profit", "profit", "Floating profit in the account currency"),
    ("mt5_account_margin", "margin", "Used margin in the account currency"),
    ("mt5_account_margin_free", "margin_free", "Free margin in the account currency"),
)


def _utc(dt: datetime) -> datetime:
    """Stores give aware datetimes; a naive one is UTC (never local time), and never crashes a scrape."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _cached(what: str) -> str:
    return (
        f"{what} from the last successful sync (cached; see mt5_account_last_sync_timestamp_seconds). "
        "Absent when the bridge never sent it."
    )


class AgentCollector(Collector):
    """Builds the state-derived metrics from `SyncService.state` on every scrape (memory only: it
    answers while the bridge and the store are down)."""

    def __init__(self, service: SyncService, thresholds: Thresholds) -> None:
        self._service = service
        self._thresholds = thresholds

    def _families(self) -> dict[str, Any]:
        def g(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=list(labels))

        fams: list[Metric] = [
            g(
                "mt5_account_info",
                "Descriptive labels of an account (always 1); join on account in PromQL.",
                ("account", "name", "server", "currency"),
            ),
            *(g(m, _cached(what), ("account",)) for m, _, what in VALUE_GAUGES),
            g(
                "mt5_account_margin_level_ratio",
                _cached("Margin level as a ratio (MT5 margin_level percent / 100)"),
                ("account",),
            ),
            g(
                "mt5_account_last_sync_timestamp_seconds",
                "Unix time of the last live data read from the terminal for the account; a VPS_STORED "
                "fallback does not move it. Absent for an account never synced live.",
                ("account",),
            ),
            g(
                "mt5_account_data_age_seconds",
                "Seconds since the last live data of the account, computed at scrape time. Absent for an "
                "account never synced live (its freshness state is critical).",
                ("account",),
            ),
            g(
                "mt5_account_freshness_state",
                "1 for the account's current freshness state (fresh, acceptable, degraded, critical), "
                "0 for the others; never synced live is critical.",
                ("account", "state"),
            ),
            g(
                "mt5_account_data_source",
                "1 for the source of the account's cached values (VPS_LIVE_MT5 or VPS_STORED), 0 otherwise; "
                "both 0 when it was never synced.",
                ("account", "source"),
            ),
            CounterMetricFamily(
                "mt5_account_sync_failures",
                "Account sync failures by reason since the agent started.",
                labels=["account", "reason"],
            ),
            g(
                "mt5_account_consecutive_failures",
                "Failed syncs of the account in a row (a live sync resets it; survives restarts).",
                ("account",),
            ),
            CounterMetricFamily(
                "mt5_sync_runs",
                "Sync cycles by result since the agent started.",
                labels=["result"],
            ),
            g(
                "mt5_sync_last_success_timestamp_seconds",
                "Unix time the last success or partial cycle finished; absent until one has (in this "
                "process).",
            ),
            g(
                "mt5_sync_last_run_accounts",
                "Accounts of the last finished cycle by outcome (live, stored, failed).",
                ("outcome",),
            ),
            g("mt5_sync_running", "1 while a sync cycle runs."),
            g(
                "mt5_bridge_up",
                "1 if the last attempt to use the bridge (health check, account list) worked; 0 if it "
                "failed, and 0 until the first attempt.",
            ),
            g(
                "mt5_store_up",
                "1 if the last store operation of the sync worked; 0 if it failed, and 0 until the store "
                "was first reached.",
            ),
        ]
        return {f.name: f for f in fams}

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        state = self._service.state
        now = _utc(self._service.clock())
        f = self._families()
        accounts = sorted(set(state.accounts) | set(state.sync_states))
        for account in accounts:
            acc = str(account)
            view = state.accounts.get(account)
            values = view.values if view else None
            info = (view.name, view.server, view.currency) if view else (None, None, None)
            f["mt5_account_info"].add_metric([acc, *(v or "" for v in info)], 1)
            if values is not None:
                for metric, field, _ in VALUE_GAUGES:
                    v = getattr(values, field)
                    if v is not None:
                        f[metric].add_metric([acc], float(v))
                if values.margin_level is not None:
                    f["mt5_account_margin_level_ratio"].add_metric([acc], float(values.margin_level) / 100.0)
            live_at = _utc(view.live_data_at) if view and view.live_data_at else None
            age = age_seconds(live_at, now)
            if live_at is not None and age is not None:
                f["mt5_account_last_sync_timestamp_seconds"].add_metric([acc], live_at.timestamp())
                f["mt5_account_data_age_seconds"].add_metric([acc], age)
            current = self._thresholds.classify(age)
            for st in STATES:
                f["mt5_account_freshness_state"].add_metric([acc, st.value], 1 if st is current else 0)
            source = view.data_source if view else None
            for src in DATA_SOURCES:
                f["mt5_account_data_source"].add_metric([acc, src], 1 if src == source else 0)
            for reason in REASONS:
                f["mt5_account_sync_failures"].add_metric(
                    [acc, reason.value], state.failures[(account, reason)]
                )
            sync_state = state.sync_states.get(account)
            f["mt5_account_consecutive_failures"].add_metric(
                [acc], sync_state.consecutive_failures if sync_state else 0
            )

        for result in RUN_RESULTS:
            f["mt5_sync_runs"].add_metric([result.value], state.runs[result])
        if state.last_success_at is not None:
            f["mt5_sync_last_success_timestamp_seconds"].add_metric(
                [], _utc(state.last_success_at).timestamp()
            )
        run = state.last_run
        if run is not None:
            counts = (run.synced_live, run.synced_stored, run.failed)
            for outcome, n in zip(RUN_OUTCOMES, counts, strict=True):
                f["mt5_sync_last_run_accounts"].add_metric([outcome], n)
        f["mt5_sync_running"].add_metric([], 1 if state.running is not None else 0)
        f["mt5_bridge_up"].add_metric([], 1 if state.bridge_up else 0)
        f["mt5_store_up"].add_metric([], 1 if state.store_up else 0)
        return list(f.values())


class AgentMetrics:
    """One agent's registry and its event metrics; built before the app so the bridge client and the
    store wrapper can report into it."""

    def __init__(self, registry: CollectorRegistry | None = None, *, version: str = __version__) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sync_duration = Histogram(
            "mt5_sync_duration_seconds",
            "Duration of finished sync cycles (every result, skipped included).",
            buckets=SYNC_BUCKETS,
            registry=self.registry,
        )
        self.bridge_request_duration = Histogram(
            "mt5_bridge_request_duration_seconds",
            "Duration of bridge HTTP requests by endpoint (failed ones included).",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.store_operation_duration = Histogram(
            "mt5_store_operation_duration_seconds",
            "Duration of store operations by operation (failed ones included).",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=self.registry,
        )
        for endpoint in BRIDGE_ENDPOINTS:
            self.bridge_request_duration.labels(endpoint)
        for op in ("write_cycle", "record_run"):
            self.store_operation_duration.labels(op)
        build = Gauge(
            "mt5_agent_build_info",
            "Version of the running agent (always 1).",
            ["version"],
            registry=self.registry,
        )
        build.labels(version).set(1)
        self._collector: AgentCollector | None = None

    def attach(self, service: SyncService, thresholds: Thresholds) -> None:
        """Register the state collector and the cycle listener for `service` (once)."""
        if self._collector is not None:
            return
        self._collector = AgentCollector(service, thresholds)
        self.registry.register(self._collector)
        service.listeners.append(self.on_run)

    def on_run(self, run: SyncRun) -> None:
        if run.duration_seconds is not None:
            self.sync_duration.observe(run.duration_seconds)

    def observe_bridge_request(self, endpoint: str, seconds: float, ok: bool) -> None:
        """`BridgeClient` observer."""
        label = endpoint if endpoint in BRIDGE_ENDPOINTS else "other"
        self.bridge_request_duration.labels(label).observe(seconds)

    def observe_store_operation(self, operation: str, seconds: float) -> None:
        label = operation if operation in STORE_OPERATIONS else "other"
        self.store_operation_duration.labels(label).observe(seconds)

    def timed_store(self, store: Store) -> Store:
        if isinstance(store, TimedStore):
            return store
        return TimedStore(store, self.observe_store_operation)  # type: ignore[return-value]


class TimedStore:
    """A transparent wrapper that times the store's operations; everything else passes through."""

    def __init__(self, inner: Store, observe: Callable[[str, float], None]) -> None:
        self.inner = inner
        self._observe = observe

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in STORE_OPERATIONS or not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self._observe(name, time.perf_counter() - started)

        return timed


def setup_metrics(app: web.Application, agent: Agent) -> None:
    """Serve /metrics from the agent's own registry (created here if build_agent did not)."""
    if agent.metrics is None:
        agent.metrics = AgentMetrics()
    agent.metrics.attach(agent.service, agent.settings.thresholds)
    app.router.add_get("/metrics", make_aiohttp_handler(agent.metrics.registry))
