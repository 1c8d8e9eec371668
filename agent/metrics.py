"""Prometheus metrics (DESIGN.md section 7) on a registry owned by each agent, never the global one.

Account values, freshness, failure counts and bridge/store status come from one collector that reads
`SyncService.state` at scrape time: a value that was not refreshed keeps its old timestamp and its age
keeps growing, so a cached value is never presented as fresh. Events (cycle and request durations)
are ordinary prometheus_client histograms fed by the sync listener, the bridge observer and the
store wrapper. Every label value comes from a bounded set, except the info metric's descriptive labels.

/metrics is served by `metrics_handler`: the same bytes prometheus_client would write, but the
per-account families (~230k samples at 10,000 accounts) come from `AgentCollector.render`, which keeps
what only a cycle changes rendered per state version and computes ages and freshness at each scrape.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics import exposition as _om_exposition
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from agent import __version__
from agent.freshness import STATES, State, Thresholds, age_seconds
from agent.models import REASONS, RUN_RESULTS, DataSource, SyncRun
from agent.sync import INVALID_ENTRY_ENDPOINTS

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
    "set_client",
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


Encoder = Callable[[Any], bytes]
# Set by our /metrics handler while it collects: the AgentCollector then hands over pre-rendered text.
_FAST_RENDER: ContextVar[tuple[Encoder, str] | None] = ContextVar("mt5_fast_render", default=None)
_FAST_ESCAPINGS = (_om_exposition.UNDERSCORES, _om_exposition.ALLOWUTF8)  # leave our names unchanged
_EOF = b"# EOF\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Families of AgentCollector, in the order `_families` defines them.
ACCOUNT_FAMILIES: tuple[str, ...] = (
    "mt5_account_info",
    *(m for m, _, _ in VALUE_GAUGES),
    "mt5_account_margin_level_ratio",
    "mt5_account_last_sync_timestamp_seconds",
    "mt5_account_data_age_seconds",
    "mt5_account_freshness_state",
    "mt5_account_data_source",
    "mt5_account_sync_failures",
    "mt5_account_consecutive_failures",
)
GLOBAL_FAMILIES: tuple[str, ...] = (
    "mt5_sync_runs",
    "mt5_sync_last_success_timestamp_seconds",
    "mt5_sync_last_run_accounts",
    "mt5_sync_running",
    "mt5_bridge_up",
    "mt5_store_up",
    "mt5_bridge_terminal_up",
    "mt5_bridge_invalid_entries",
    "mt5_bridge_clock_skew",
    "mt5_bridge_clock_skew_seconds",
    "mt5_sync_accounts_pruned",
    "mt5_freshness_threshold_seconds",
)
# mt5_freshness_threshold_seconds{state}: the age at which each state begins.
THRESHOLD_STATES: tuple[tuple[State, str], ...] = (
    (State.ACCEPTABLE, "acceptable_after"),
    (State.DEGRADED, "degraded_after"),
    (State.CRITICAL, "critical_after"),
)
# One account's four freshness lines for each current state; %s is the line's prefix up to the state.
_FRESHNESS_TEMPLATES = {
    current: "".join(f'%s{st.value}"}} {"1.0" if st is current else "0.0"}\n' for st in STATES)
    for current in STATES
}


def margin_level_ratio(margin_level: float | None, margin: float | None) -> float | None:
    """MT5's margin_level (percent) as a ratio; None when there is none to show. MT5 reports 0 when no
    margin is used: exporting that 0 would read as a stop-out, so an idle account has no ratio."""
    if margin_level is None or (margin_level == 0 and not margin):
        return None
    return float(margin_level) / 100.0


def _label(value: str) -> str:
    """A label value escaped as both text formats escape it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _float(value: float) -> str:
    """A float sample value as both text formats write it (floatToGoString), without its checks for the
    common case: a finite repr with a dot is what it returns unless Go would switch to an exponent."""
    text = repr(value)
    dot = text.find(".")
    if dot < 0 or (dot > 6 and value > 0):  # inf, nan, 1e+300: or 12345678.9 -> 1.23456789e+07
        return floatToGoString(value)
    return text


_SMALL_COUNTS = {n: floatToGoString(n) for n in range(1024)}


def _count(value: int) -> str:
    """An integer sample value (a count) as both text formats write it."""
    text = _SMALL_COUNTS.get(value)
    return text if text is not None and type(value) is int else floatToGoString(value)


# One account's lines of the families with a fixed label set, for %-formatting with its label value.
_SOURCE_TEMPLATES = {
    source: "".join(
        f'mt5_account_data_source{{account="%s",source="{src}"}} {"1.0" if src == source else "0.0"}\n'
        for src in DATA_SOURCES
    )
    for source in DATA_SOURCES
}
_NO_SOURCE_TEMPLATE = "".join(
    f'mt5_account_data_source{{account="%s",source="{src}"}} 0.0\n' for src in DATA_SOURCES
)
_FAILURES_TEMPLATE = "".join(
    f'mt5_account_sync_failures_total{{account="%s",reason="{reason.value}"}} %s\n' for reason in REASONS
)
_NO_FAILURES_TEMPLATE = "".join(
    f'mt5_account_sync_failures_total{{account="%s",reason="{reason.value}"}} 0.0\n' for reason in REASONS
)


class _Only:
    """A collector over given families, to run prometheus_client's own encoders on part of a scrape."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Sequence[Metric]:
        return self._metrics


def _encode(encoder: Encoder, metrics: Sequence[Metric]) -> bytes:
    return encoder(_Only(metrics)).removesuffix(_EOF)


class _PreRendered(Metric):
    """AgentCollector's families, already rendered by `AgentCollector.render`."""

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__("mt5_account_prerendered", "", "unknown")
        self.parts = parts


# (rows of (account, name, server, values, data_source, live_data_at, consecutive), failures by account)
_Snapshot = tuple[list[tuple[Any, ...]], dict[int, list[int]]]


@dataclass
class _StaticText:
    state: Any  # the SyncState rendered (identity is part of the cache key)
    key: tuple[int, ...]
    bodies: dict[str, bytes]  # per-account family -> its sample lines (not the ages and freshness)
    rows: list[tuple[str, str, int | None]]  # per account: label value, freshness prefix, live µs
    fresh_states: list[State] | None = None  # the states `fresh_text` shows
    fresh_text: bytes = b""


class AgentCollector(Collector):
    """Builds the state-derived metrics from `SyncService.state` on every scrape (memory only: it
    answers while the bridge and the store are down)."""

    def __init__(self, service: SyncService, thresholds: Thresholds) -> None:
        self._service = service
        self._thresholds = thresholds
        self._heads: dict[str, dict[str, bytes]] = {}  # content type -> family -> HELP/TYPE lines
        self._static: _StaticText | None = None
        self._prepare_lock = asyncio.Lock()

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
                _cached(
                    "Margin level as a ratio (MT5 margin_level percent / 100); also absent while no "
                    "margin is used (MT5 then reports 0, which is not a stop-out)"
                ),
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
            g(
                "mt5_bridge_terminal_up",
                "1 if the last cycle that fetched accounts got live data for at least one; 0 if the bridge "
                "answered but none came back live (terminal down: stored data or errors only). Absent "
                "until a cycle has fetched accounts.",
            ),
            CounterMetricFamily(
                "mt5_bridge_invalid_entries",
                "Malformed entries skipped in bridge lists (summary, live batch) since the agent started: "
                "not an object, or no valid account id.",
                labels=["endpoint"],
            ),
            CounterMetricFamily(
                "mt5_bridge_clock_skew",
                "Accounts' live data refused (reason invalid_payload) because its timestamp was ahead of "
                "the receive time by more than the clock-skew tolerance, since the agent started.",
            ),
            g(
                "mt5_bridge_clock_skew_seconds",
                "Largest lead of a live_data timestamp over the agent's receive time in the last cycle that "
                "fetched accounts (0 when none was ahead). Absent until one has.",
            ),
            CounterMetricFamily(
                "mt5_sync_accounts_pruned",
                "Accounts removed from the fleet (and from these metrics) after the bridge stopped listing "
                "them, since the agent started.",
            ),
            g(
                "mt5_freshness_threshold_seconds",
                "Configured data age in seconds at which each freshness state begins (fresh below "
                "acceptable); the alert rules compare ages with these.",
                ("state",),
            ),
        ]
        return {f.name: f for f in fams}

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        fast = _FAST_RENDER.get()
        if fast is not None:
            # Inside our /metrics handler: the same families, already in exposition text.
            return [_PreRendered(self.render(*fast))]
        return self.collect_families()

    def collect_families(self) -> list[Metric]:
        """The families as prometheus_client objects: the reference for `render` (any registry user,
        and the `name[]` and unusual-escaping requests, go through here)."""
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
                ratio = margin_level_ratio(values.margin_level, values.margin)
                if ratio is not None:
                    f["mt5_account_margin_level_ratio"].add_metric([acc], ratio)
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
        self._global_families(f, state)
        return list(f.values())

    def _global_families(self, f: dict[str, Any], state: Any) -> None:
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
        if state.terminal_up is not None:
            f["mt5_bridge_terminal_up"].add_metric([], 1 if state.terminal_up else 0)
        for endpoint in INVALID_ENTRY_ENDPOINTS:
            f["mt5_bridge_invalid_entries"].add_metric([endpoint], state.invalid_entries[endpoint])
        f["mt5_bridge_clock_skew"].add_metric([], state.clock_skew_total)
        if state.clock_skew_seconds is not None:
            f["mt5_bridge_clock_skew_seconds"].add_metric([], state.clock_skew_seconds)
        f["mt5_sync_accounts_pruned"].add_metric([], state.pruned_total)
        for st, attr in THRESHOLD_STATES:
            f["mt5_freshness_threshold_seconds"].add_metric([st.value], getattr(self._thresholds, attr))

    # The fast path -----------------------------------------------------------------------------
    # Same bytes as prometheus_client would write for `collect_families()` (tests/observability/
    # test_fast_exposition.py checks that for every format we serve), at a fraction of the cost: at
    # 10,000 accounts the per-account families are ~230k samples. What only a cycle changes is rendered
    # once per state version; ages and freshness states are computed at every scrape.

    def render(self, encoder: Encoder, content_type: str) -> list[bytes]:
        """This collector's families in the exposition format of `encoder` (one of prometheus_client's
        own, as `choose_encoder` picks it), without the OpenMetrics `# EOF` line."""
        state = self._service.state
        now = _utc(self._service.clock())
        heads = self._heads.get(content_type)
        if heads is None:
            heads = self._heads[content_type] = {
                fam.name: _encode(encoder, [fam]) for fam in self._families().values()
            }
        static = self._static_for(state)
        ages, fresh = self._dynamic(static, now)
        f = self._families()
        self._global_families(f, state)
        parts = []
        for name in ACCOUNT_FAMILIES:
            parts.append(heads[name])
            if name == "mt5_account_data_age_seconds":
                parts.append(ages)
            elif name == "mt5_account_freshness_state":
                parts.append(fresh)
            else:
                parts.append(static.bodies[name])
        parts.append(_encode(encoder, [f[name] for name in GLOBAL_FAMILIES]))
        return parts

    @staticmethod
    def _key(state: Any) -> tuple[int, ...]:
        return (state.version, len(state.accounts), len(state.sync_states), len(state.failures))

    def _cached(self, state: Any, key: tuple[int, ...]) -> _StaticText | None:
        cached = self._static
        if cached is not None and cached.state is state and cached.key == key:
            return cached
        return None

    def _static_for(self, state: Any) -> _StaticText:
        key = self._key(state)
        cached = self._cached(state, key)
        if cached is None:
            self._static = cached = self._render_static(state, key, self._snapshot(state))
        return cached

    async def prepare(self) -> None:
        """Before a scrape: when a cycle changed the state since the last one, render the static text
        in a worker thread (10,000 accounts: ~150 ms that would otherwise hold the event loop) from a
        snapshot taken here on the loop. `render` then finds it cached; if another cycle lands in
        between, the key no longer matches and `render` renders it again itself."""
        async with self._prepare_lock:
            state = self._service.state
            key = self._key(state)
            if self._cached(state, key) is not None:
                return
            snapshot = self._snapshot(state)
            self._static = await asyncio.to_thread(self._render_static, state, key, snapshot)

    @staticmethod
    def _snapshot(state: Any) -> _Snapshot:
        """What the static text depends on, read at one instant (everything it holds is immutable):
        (account, name, server, values, data_source, live_data_at, consecutive failures) per account,
        and the failure counts by account in REASONS order."""
        failed: dict[int, list[int]] = {}
        reason_index = {reason: i for i, reason in enumerate(REASONS)}
        for (account, reason), n in state.failures.items():
            if reason in reason_index:
                failed.setdefault(account, [0] * len(REASONS))[reason_index[reason]] = n
        accounts, sync_states = state.accounts, state.sync_states
        rows = []
        for account in sorted(set(accounts) | set(sync_states)):
            view = accounts.get(account)
            sync_state = sync_states.get(account)
            consecutive = sync_state.consecutive_failures if sync_state else 0
            if view is None:
                rows.append((account, None, None, None, None, None, consecutive))
            else:
                rows.append(
                    (
                        account,
                        view.name,
                        view.server,
                        view.values,
                        view.data_source,
                        view.live_data_at,
                        consecutive,
                    )
                )
        return rows, failed

    @staticmethod
    def _render_static(state: Any, key: tuple[int, ...], snapshot: _Snapshot) -> _StaticText:
        """Every per-account sample line that does not depend on the time of the scrape (a pure
        function of the snapshot: safe on a worker thread)."""
        rows_in, failed = snapshot
        lines: dict[str, list[str]] = {name: [] for name in ACCOUNT_FAMILIES}
        info = lines["mt5_account_info"]
        value_lines = [(lines[m], f"{m}{{account=", field) for m, field, _ in VALUE_GAUGES]
        ratio = lines["mt5_account_margin_level_ratio"]
        stamp = lines["mt5_account_last_sync_timestamp_seconds"]
        source_lines = lines["mt5_account_data_source"]
        failure_lines = lines["mt5_account_sync_failures"]
        consecutive = lines["mt5_account_consecutive_failures"]
        rows: list[tuple[str, str, int | None]] = []
        for account, name, server, values, source, live_data_at, n_consecutive in rows_in:
            acc = str(account)
            currency = values.currency if values is not None else None
            info.append(
                f'mt5_account_info{{account="{acc}",currency="{_label(currency or "")}",'
                f'name="{_label(name or "")}",server="{_label(server or "")}"}} 1.0\n'
            )
            if values is not None:
                for out, prefix, field in value_lines:
                    v = getattr(values, field)
                    if v is not None:
                        out.append(f'{prefix}"{acc}"}} {_float(float(v))}\n')
                level = values.margin_level
                if level is not None and (level or values.margin):  # margin_level_ratio, inlined
                    ratio.append(
                        f'mt5_account_margin_level_ratio{{account="{acc}"}} {_float(float(level) / 100.0)}\n'
                    )
            live_at = _utc(live_data_at) if live_data_at else None
            live_us = None
            if live_at is not None:
                live_us = (live_at - _EPOCH) // _MICROSECOND
                stamp.append(
                    f'mt5_account_last_sync_timestamp_seconds{{account="{acc}"}} '
                    f"{_float(live_at.timestamp())}\n"
                )
            rows.append((acc, f'mt5_account_freshness_state{{account="{acc}",state="', live_us))
            source_lines.append(_SOURCE_TEMPLATES.get(source, _NO_SOURCE_TEMPLATE) % (acc, acc))
            counts = failed.get(account)
            if counts is None:
                failure_lines.append(_NO_FAILURES_TEMPLATE % ((acc,) * len(REASONS)))
            else:
                failure_lines.append(_FAILURES_TEMPLATE % tuple(x for n in counts for x in (acc, _count(n))))
            consecutive.append(
                f'mt5_account_consecutive_failures{{account="{acc}"}} {_count(n_consecutive)}\n'
            )
        bodies = {name: "".join(out).encode() for name, out in lines.items()}
        return _StaticText(state=state, key=key, bodies=bodies, rows=rows)

    def _dynamic(self, static: _StaticText, now: datetime) -> tuple[bytes, bytes]:
        """Ages and freshness states at `now`: exactly `age_seconds` (integer microseconds divided as
        timedelta.total_seconds() does) and `Thresholds.classify`."""
        now_us = (now - _EPOCH) // _MICROSECOND
        classify = self._thresholds.classify
        ages: list[str] = []
        states: list[State] = []
        for acc, _, live_us in static.rows:
            if live_us is None:
                states.append(classify(None))
            else:
                age = max(0.0, (now_us - live_us) / 1_000_000)
                ages.append(f'mt5_account_data_age_seconds{{account="{acc}"}} {_float(age)}\n')
                states.append(classify(age))
        # States change only when an account crosses a threshold: most scrapes reuse the last text.
        if static.fresh_states != states:
            templates, n = _FRESHNESS_TEMPLATES, len(STATES)
            static.fresh_text = "".join(
                [templates[st] % ((row[1],) * n) for st, row in zip(states, static.rows, strict=True)]
            ).encode()
            static.fresh_states = states
        return "".join(ages).encode(), static.fresh_text


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

    @property
    def collector(self) -> AgentCollector | None:
        return self._collector

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
        # name -> (function, instance it is bound to, its timed wrapper): an API read per request
        # must not pay functools.wraps and inspect on every call.
        self._timed: dict[str, tuple[Any, Any, Any]] = {}

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in STORE_OPERATIONS:
            return attr
        func, bound_to = getattr(attr, "__func__", attr), getattr(attr, "__self__", None)
        cached = self._timed.get(name)
        if cached is not None and cached[0] is func and cached[1] is bound_to:
            return cached[2]
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self._observe(name, time.perf_counter() - started)

        self._timed[name] = (func, bound_to, timed)
        return timed


def render_registry(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) of a scrape, as prometheus_client's own handler would answer it, with
    AgentCollector's families from its fast path when the format allows (names the escaping keeps)."""
    encoder, content_type = choose_encoder(accept)
    escaping = getattr(encoder, "keywords", {}).get("escaping", _om_exposition.UNDERSCORES)
    if escaping not in _FAST_ESCAPINGS:
        return encoder(registry), content_type
    token = _FAST_RENDER.set((encoder, content_type))
    try:
        metrics = list(registry.collect())
    finally:
        _FAST_RENDER.reset(token)
    parts: list[bytes] = []
    batch: list[Metric] = []
    for metric in metrics:
        if isinstance(metric, _PreRendered):
            if batch:
                parts.append(_encode(encoder, batch))
                batch = []
            parts.extend(metric.parts)
        else:
            batch.append(metric)
    if batch:
        parts.append(_encode(encoder, batch))
    if getattr(encoder, "func", encoder) is _om_exposition.generate_latest:
        parts.append(_EOF)
    return b"".join(parts), content_type


# A scrape of 10,000 accounts is ~15 MB of text: zlib level 1 compresses it in a third of the CPU time
# of the default level 6 (36 vs 124 ms here) for an answer ~13% larger (1.0 vs 0.88 MB).
COMPRESS_LEVEL = 1
_COMPRESS_IN_THREAD = 256 * 1024  # larger bodies are compressed off the event loop
_WBITS = {"deflate": zlib.MAX_WBITS, "gzip": 16 + zlib.MAX_WBITS}  # as aiohttp's own compression


def _content_coding(request: web.Request) -> str | None:
    """The coding aiohttp's `enable_compression` would pick (deflate before gzip), or None."""
    accept = request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()
    return next((coding for coding in _WBITS if coding in accept), None)


def _compress(body: bytes, coding: str) -> bytes:
    compressor = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, _WBITS[coding])
    return compressor.compress(body) + compressor.flush()


def metrics_handler(
    registry: CollectorRegistry, collector: AgentCollector | None = None
) -> Callable[[web.Request], Any]:
    """/metrics: what prometheus_client.aiohttp's handler answers (format negotiation, `name[]`,
    gzip/deflate as aiohttp negotiates them), rendered by `render_registry`; `collector` (the one in
    `registry`) gets to prepare its text off the event loop first."""

    async def handler(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall(hdrs.ACCEPT, []))
        names = request.query.getall("name[]", [])
        if collector is not None and not names:
            await collector.prepare()
        if names:
            encoder, content_type = choose_encoder(accept)
            output = encoder(registry.restricted_registry(names))
        else:
            output, content_type = render_registry(registry, accept)
        headers = {"Content-Type": content_type}
        coding = _content_coding(request)
        if coding is not None:
            if len(output) > _COMPRESS_IN_THREAD:
                output = await asyncio.get_running_loop().run_in_executor(None, _compress, output, coding)
            else:
                output = _compress(output, coding)
            headers["Content-Encoding"] = coding
        return web.Response(status=200, headers=headers, body=output)

    return handler


def setup_metrics(app: web.Application, agent: Agent) -> None:
    """Serve /metrics from the agent's own registry (created here if build_agent did not)."""
    if agent.metrics is None:
        agent.metrics = AgentMetrics()
    agent.metrics.attach(agent.service, agent.settings.thresholds)
    app.router.add_get("/metrics", metrics_handler(agent.metrics.registry, agent.metrics.collector))
