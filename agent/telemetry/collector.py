"""The fleet collector: account values, freshness, failure counts and bridge/store status, read from the
fleet read model (`agent.sync.fleet`) at scrape time (memory only: it answers while the bridge and the
store are down).

A value that was not refreshed keeps its old timestamp and its age keeps growing, so a cached value is
never presented as fresh. Ages and states come from `agent.domain.freshness` (`age_seconds`,
`Thresholds.classify`), the one definition of freshness; names, help and labels from the catalog.

Two ways out, the same bytes (tests/observability/test_fast_exposition.py):
- `collect()`: prometheus_client families, for any registry user (the `name[]` filter, unusual escapings);
- `render(encoder, content_type)`: the exposition text of the same families, for /metrics. What only a
  new fleet version changes (~230k samples at 10,000 accounts) is rendered once per version, off the
  event loop when `prepare()` runs first; ages and freshness states are computed at every scrape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.domain.accounts import REASONS, DataSource
from agent.domain.freshness import STATES, State, Thresholds, age_seconds
from agent.domain.runs import RUN_RESULTS
from agent.sync.cycle import INVALID_ENTRY_ENDPOINTS
from agent.sync.fleet import FleetSnapshot, SyncStatus
from agent.telemetry import catalog as m
from agent.telemetry.catalog import Kind
from agent.telemetry.textformat import Encoder, count_text, encode, float_text, label


class FleetReader(Protocol):
    """What the collector reads: `agent.sync.fleet.Fleet`, the one read model (tests may stand in)."""

    def snapshot(self) -> FleetSnapshot: ...
    @property
    def status(self) -> SyncStatus: ...
    @property
    def sources(self) -> Mapping[str, SyncStatus]: ...


def _utc(dt: datetime) -> datetime:
    """Stores give aware datetimes; a naive one is UTC (never local time), and never crashes a scrape."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def margin_level_ratio(margin_level: float | None, margin: float | None) -> float | None:
    """MT5's margin_level (percent) as a ratio; None when there is none to show. MT5 reports 0 when no
    margin is used: exporting that 0 would read as a stop-out, so an idle account has no ratio."""
    if margin_level is None or (margin_level == 0 and not margin):
        return None
    return float(margin_level) / 100.0


def _family(f: m.Family) -> Metric:
    cls = CounterMetricFamily if f.kind is Kind.COUNTER else GaugeMetricFamily
    return cls(f.name, f.help, labels=list(f.labels))


def families() -> dict[str, Any]:
    """The collector's families, empty, by name (per-account ones first, in exposition order)."""
    return {f.name: _family(f) for f in (*m.ACCOUNT_FAMILIES, *m.GLOBAL_FAMILIES)}


# Sample lines of the per-account families. Both text formats write labels sorted by name.
_A = m.ACCOUNT
_DATA_SOURCES = tuple(DataSource)
_SOURCE_PREFIX = f'{m.ACCOUNT_DATA_SOURCE.series}{{{_A}="%s",{m.SOURCE}="'
_SOURCE_TEMPLATES: dict[str | None, str] = {
    source: "".join(
        f'{_SOURCE_PREFIX}{src}"}} {"1.0" if src == source else "0.0"}\n' for src in _DATA_SOURCES
    )
    for source in _DATA_SOURCES
}
_NO_SOURCE_TEMPLATE = "".join(f'{_SOURCE_PREFIX}{src}"}} 0.0\n' for src in _DATA_SOURCES)
_FAILURES_TEMPLATE = "".join(
    f'{m.ACCOUNT_SYNC_FAILURES.series}{{{_A}="%s",{m.REASON}="{reason}"}} %s\n' for reason in REASONS
)
_NO_FAILURES_TEMPLATE = "".join(
    f'{m.ACCOUNT_SYNC_FAILURES.series}{{{_A}="%s",{m.REASON}="{reason}"}} 0.0\n' for reason in REASONS
)
# One account's four freshness lines for each current state; %s is the line's prefix up to the state.
_FRESHNESS_TEMPLATES = {
    current: "".join(f'%s{st}"}} {"1.0" if st is current else "0.0"}\n' for st in STATES)
    for current in STATES
}
_INFO = (
    f'{m.ACCOUNT_INFO.series}{{{_A}="%s",{m.CURRENCY}="%s",{m.NAME}="%s",{m.SERVER}="%s",{m.SOURCE}="%s"}}'
    " 1.0\n"
)
assert sorted(m.ACCOUNT_INFO.labels) == [_A, m.CURRENCY, m.NAME, m.SERVER, m.SOURCE]
DEFAULT_SOURCE = "bridge"  # the source label of a fleet without registered sources (its one source)
assert m.ACCOUNT < m.SOURCE and m.ACCOUNT < m.REASON and m.ACCOUNT < m.STATE  # the templates' label order


@dataclass
class _StaticText:
    version: int  # the snapshot version rendered
    bodies: dict[str, bytes]  # per-account family -> its sample lines (not the ages and freshness)
    rows: list[tuple[str, str, datetime | None]]  # per account: label value, freshness prefix, live data at
    fresh_states: list[State] | None = None  # the states `fresh_text` shows
    fresh_text: bytes = b""


class FleetCollector(Collector):
    """Builds the state-derived metrics from the fleet on every scrape; `clock` gives the scrape time."""

    def __init__(self, fleet: FleetReader, thresholds: Thresholds, clock: Callable[[], datetime]) -> None:
        self._fleet = fleet
        self._thresholds = thresholds
        self._clock = clock
        self._heads: dict[str, dict[str, bytes]] = {}  # content type -> family -> HELP/TYPE lines
        self._static: _StaticText | None = None
        self._prepare_lock = asyncio.Lock()

    def describe(self) -> Iterable[Metric]:
        return list(families().values())

    def collect(self) -> Iterable[Metric]:
        """The families as prometheus_client objects: the reference for `render`."""
        snap, status = self._fleet.snapshot(), self._fleet.status
        now = _utc(self._clock())
        f = families()
        classify = self._thresholds.classify
        for account, row in sorted(snap.accounts.items()):
            acc = str(account)
            values = row.values
            currency = values.currency if values is not None else None
            f[m.ACCOUNT_INFO.name].add_metric(
                [acc, row.name or "", row.server or "", currency or "", row.source or ""], 1
            )
            if values is not None:
                for family, field in m.VALUE_GAUGES:
                    v = getattr(values, field)
                    if v is not None:
                        f[family.name].add_metric([acc], float(v))
                ratio = margin_level_ratio(values.margin_level, values.margin)
                if ratio is not None:
                    f[m.ACCOUNT_MARGIN_LEVEL_RATIO.name].add_metric([acc], ratio)
            live_at = _utc(row.live_data_at) if row.live_data_at else None
            age = age_seconds(live_at, now)
            if live_at is not None and age is not None:
                f[m.ACCOUNT_LAST_SYNC.name].add_metric([acc], live_at.timestamp())
                f[m.ACCOUNT_DATA_AGE.name].add_metric([acc], age)
            current = classify(age)
            for st in STATES:
                f[m.ACCOUNT_FRESHNESS.name].add_metric([acc, st.value], 1 if st is current else 0)
            for src in _DATA_SOURCES:
                f[m.ACCOUNT_DATA_SOURCE.name].add_metric([acc, src.value], 1 if src == row.data_source else 0)
            for reason in REASONS:
                n = snap.failures.get((account, reason), 0)
                f[m.ACCOUNT_SYNC_FAILURES.name].add_metric([acc, reason.value], n)
            f[m.ACCOUNT_CONSECUTIVE_FAILURES.name].add_metric([acc], row.consecutive_failures)
        self._global_families(f, status)
        return list(f.values())

    def _global_families(self, f: dict[str, Any], status: SyncStatus) -> None:
        for result in RUN_RESULTS:
            f[m.SYNC_RUNS.name].add_metric([result.value], status.runs.get(result, 0))
        if status.last_success_at is not None:
            f[m.SYNC_LAST_SUCCESS.name].add_metric([], _utc(status.last_success_at).timestamp())
        run = status.last_run
        if run is not None:
            counts = (run.synced_live, run.synced_stored, run.failed)
            for outcome, n in zip(m.RUN_OUTCOMES, counts, strict=True):
                f[m.SYNC_LAST_RUN_ACCOUNTS.name].add_metric([outcome], n)
        gauges: list[tuple[m.Family, Any]] = [
            (m.SYNC_RUNNING, 1 if status.running is not None else 0),
            (m.STORE_UP, 1 if status.store_up else 0),
        ]
        for family, value in gauges:
            f[family.name].add_metric([], value)
        # Source-level series: one per configured source (a closed set known at start).
        sources = getattr(self._fleet, "sources", None) or {DEFAULT_SOURCE: status}  # stand-ins may lack it
        for name, one in sources.items():
            for result in RUN_RESULTS:
                f[m.SOURCE_SYNC_RUNS.name].add_metric([name, result.value], one.runs.get(result, 0))
            if one.last_success_at is not None:
                f[m.SOURCE_LAST_SUCCESS.name].add_metric([name], _utc(one.last_success_at).timestamp())
            f[m.BRIDGE_UP.name].add_metric([name], 1 if one.bridge_up else 0)
            if one.terminal_up is not None:
                f[m.BRIDGE_TERMINAL_UP.name].add_metric([name], 1 if one.terminal_up else 0)
            f[m.SOURCE_DUPLICATE_ACCOUNTS.name].add_metric([name], one.duplicate_accounts)
        for endpoint in INVALID_ENTRY_ENDPOINTS:
            n = status.invalid_entries.get(endpoint, 0)
            f[m.BRIDGE_INVALID_ENTRIES.name].add_metric([endpoint], n)
        f[m.BRIDGE_CLOCK_SKEW.name].add_metric([], status.clock_skew_total)
        if status.clock_skew_seconds is not None:
            f[m.BRIDGE_CLOCK_SKEW_SECONDS.name].add_metric([], status.clock_skew_seconds)
        f[m.SYNC_ACCOUNTS_PRUNED.name].add_metric([], status.pruned_total)
        for st, attr in m.THRESHOLD_STATES:
            f[m.FRESHNESS_THRESHOLD.name].add_metric([st.value], getattr(self._thresholds, attr))

    # The text path ------------------------------------------------------------------------------

    def render(self, encoder: Encoder, content_type: str) -> list[bytes]:
        """This collector's families in the exposition format of `encoder` (one of prometheus_client's
        own, as `choose_encoder` picks it), without the OpenMetrics `# EOF` line."""
        snap, status = self._fleet.snapshot(), self._fleet.status
        now = _utc(self._clock())
        heads = self._heads.get(content_type)
        if heads is None:
            heads = self._heads[content_type] = {
                name: encode(encoder, [fam]) for name, fam in families().items()
            }
        static = self._static_for(snap)
        ages, fresh = self._dynamic(static, now)
        parts = []
        for family in m.ACCOUNT_FAMILIES:
            parts.append(heads[family.name])
            if family is m.ACCOUNT_DATA_AGE:
                parts.append(ages)
            elif family is m.ACCOUNT_FRESHNESS:
                parts.append(fresh)
            else:
                parts.append(static.bodies[family.name])
        f = {family.name: _family(family) for family in m.GLOBAL_FAMILIES}
        self._global_families(f, status)
        parts.append(encode(encoder, list(f.values())))
        return parts

    def _static_for(self, snap: FleetSnapshot) -> _StaticText:
        cached = self._static
        if cached is None or cached.version != snap.version:
            self._static = cached = self._render_static(snap)
        return cached

    async def prepare(self) -> None:
        """Before a scrape: when the fleet has a new version since the last one, render its static text in
        a worker thread (10,000 accounts: ~150 ms that would otherwise hold the event loop); the snapshot
        is immutable. `render` then finds it cached; if another version lands in between, `render`
        renders that one itself."""
        async with self._prepare_lock:
            snap = self._fleet.snapshot()
            cached = self._static
            if cached is not None and cached.version == snap.version:
                return
            self._static = await asyncio.to_thread(self._render_static, snap)

    @staticmethod
    def _render_static(snap: FleetSnapshot) -> _StaticText:
        """Every per-account sample line that does not depend on the time of the scrape (a pure function
        of the snapshot: safe on a worker thread)."""
        reason_index = {reason: i for i, reason in enumerate(REASONS)}
        failed: dict[int, list[int]] = {}
        for (account, reason), n in snap.failures.items():
            if reason in reason_index:
                failed.setdefault(account, [0] * len(REASONS))[reason_index[reason]] = n
        lines: dict[str, list[str]] = {f.name: [] for f in m.ACCOUNT_FAMILIES}
        info = lines[m.ACCOUNT_INFO.name]
        value_lines = [(lines[f.name], f'{f.series}{{{_A}="', field) for f, field in m.VALUE_GAUGES]
        ratio_lines = lines[m.ACCOUNT_MARGIN_LEVEL_RATIO.name]
        ratio_prefix = f'{m.ACCOUNT_MARGIN_LEVEL_RATIO.series}{{{_A}="'
        stamp = lines[m.ACCOUNT_LAST_SYNC.name]
        stamp_prefix = f'{m.ACCOUNT_LAST_SYNC.series}{{{_A}="'
        fresh_prefix = f'{m.ACCOUNT_FRESHNESS.series}{{{_A}="'
        fresh_suffix = f'",{m.STATE}="'
        source_lines = lines[m.ACCOUNT_DATA_SOURCE.name]
        failure_lines = lines[m.ACCOUNT_SYNC_FAILURES.name]
        consecutive = lines[m.ACCOUNT_CONSECUTIVE_FAILURES.name]
        consecutive_prefix = f'{m.ACCOUNT_CONSECUTIVE_FAILURES.series}{{{_A}="'
        n_reasons = len(REASONS)
        rows: list[tuple[str, str, datetime | None]] = []
        for account, row in sorted(snap.accounts.items()):
            acc = str(account)
            values = row.values
            currency = values.currency if values is not None else None
            info.append(
                _INFO
                % (
                    acc,
                    label(currency or ""),
                    label(row.name or ""),
                    label(row.server or ""),
                    row.source or "",
                )
            )
            if values is not None:
                for out, prefix, field in value_lines:
                    v = getattr(values, field)
                    if v is not None:
                        out.append(f'{prefix}{acc}"}} {float_text(float(v))}\n')
                ratio = margin_level_ratio(values.margin_level, values.margin)
                if ratio is not None:
                    ratio_lines.append(f'{ratio_prefix}{acc}"}} {float_text(ratio)}\n')
            live_at = _utc(row.live_data_at) if row.live_data_at else None
            if live_at is not None:
                stamp.append(f'{stamp_prefix}{acc}"}} {float_text(live_at.timestamp())}\n')
            rows.append((acc, f"{fresh_prefix}{acc}{fresh_suffix}", live_at))
            source_lines.append(_SOURCE_TEMPLATES.get(row.data_source, _NO_SOURCE_TEMPLATE) % (acc, acc))
            counts = failed.get(account)
            if counts is None:
                failure_lines.append(_NO_FAILURES_TEMPLATE % ((acc,) * n_reasons))
            else:
                failure_lines.append(
                    _FAILURES_TEMPLATE % tuple(x for n in counts for x in (acc, count_text(n)))
                )
            consecutive.append(f'{consecutive_prefix}{acc}"}} {count_text(row.consecutive_failures)}\n')
        bodies = {name: "".join(out).encode() for name, out in lines.items()}
        return _StaticText(version=snap.version, bodies=bodies, rows=rows)

    def _dynamic(self, static: _StaticText, now: datetime) -> tuple[bytes, bytes]:
        """Ages (`age_seconds`) and freshness states (`Thresholds.classify`) at `now`."""
        classify = self._thresholds.classify
        age_prefix = f'{m.ACCOUNT_DATA_AGE.series}{{{_A}="'
        ages: list[str] = []
        states: list[State] = []
        for acc, _, live_at in static.rows:
            age = age_seconds(live_at, now)
            if age is not None:
                ages.append(f'{age_prefix}{acc}"}} {float_text(age)}\n')
            states.append(classify(age))
        # States change only when an account crosses a threshold: most scrapes reuse the last text.
        if static.fresh_states != states:
            templates, n = _FRESHNESS_TEMPLATES, len(STATES)
            static.fresh_text = "".join(
                [templates[st] % ((row[1],) * n) for st, row in zip(states, static.rows, strict=True)]
            ).encode()
            static.fresh_states = states
        return "".join(ages).encode(), static.fresh_text
