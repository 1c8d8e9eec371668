"""The risk families (catalog.RISK_FAMILIES), read at scrape time from the risk book.

Two outputs, the same bytes (tests/risk/test_risk_exposition.py): `collect()` for prometheus_client (the
`name[]` filter, unusual escapings) and `render()`, the text written directly for /metrics: at 10,000
accounts the families are tens of thousands of samples, which prometheus_client builds and encodes several
times slower. Registered after the fleet collector (AgentMetrics.attach_fleet) and rendered after it.
Labels are bounded: `account` by the fleet, `symbol` by catalog.RISK_SYMBOLS_PER_ACCOUNT (+ `other`),
`period` by catalog.DRAWDOWN_PERIODS.

The text is cached (issue 17: /metrics at 10,000 accounts): whole while the book's `version` stands, and
per account otherwise, so a scrape after a change writes only the accounts whose summary or peaks moved.
The drawdown itself is not exported: it is `1 - equity / peak`, computed in PromQL (alerts/render.py),
which saves two series per account.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.domain.accounts import BrokerLevels
from agent.risk.book import OpenRisk, RiskBook
from agent.risk.correlation import AccountCorrelation
from agent.sync.fleet import FleetSnapshot
from agent.telemetry import catalog as m
from agent.telemetry.textformat import Encoder, encode, float_text, label

_DAY, _TRACKING = m.DRAWDOWN_PERIODS


def _families() -> dict[str, GaugeMetricFamily]:
    return {f.name: GaugeMetricFamily(f.name, f.help, labels=list(f.labels)) for f in m.RISK_FAMILIES}


class RiskCollector(Collector):
    def __init__(self) -> None:
        self._book: RiskBook | None = None
        self._fleet: Callable[[], FleetSnapshot] | None = None
        self._heads: dict[str, dict[str, bytes]] = {}  # content type -> family -> HELP/TYPE lines
        self._text: _Text | None = None  # the last text written, with its per-account pieces
        self._prepare_lock = asyncio.Lock()

    def attach(self, book: RiskBook, fleet: Callable[[], FleetSnapshot] | None = None) -> None:
        """Read `book` from now on; `fleet`, when given, is sampled for equity at each scrape too (the
        book takes each sample once)."""
        self._book = book
        self._fleet = fleet
        self._text = None

    @property
    def book(self) -> RiskBook | None:
        return self._book

    def describe(self) -> Iterable[Metric]:
        return list(_families().values())

    def collect(self) -> Iterable[Metric]:
        f: dict[str, Any] = _families()
        book = self._book
        if book is None:
            return list(f.values())
        if self._fleet is not None:
            book.observe_fleet(self._fleet())
        f[m.RISK_TRACKING_START.name].add_metric([], book.tracking_since.timestamp())
        loss, exposure = f[m.ACCOUNT_LARGEST_OPEN_LOSS.name], f[m.ACCOUNT_NET_EXPOSURE.name]
        for account, risk in sorted(book.open_risk().items()):
            acc = str(account)
            loss.add_metric([acc], risk.largest_loss)
            for symbol, lots in risk.exposure:
                exposure.add_metric([acc, symbol], lots)
        peak = f[m.ACCOUNT_EQUITY_PEAK.name]
        for account, d in sorted(book.drawdowns().items()):
            acc = str(account)
            for period, top in ((_DAY, d.day_peak), (_TRACKING, d.peak)):
                peak.add_metric([acc, period], top)
        corr, lots = f[m.ACCOUNT_POSITION_CORRELATION.name], f[m.ACCOUNT_CORRELATED_EXPOSURE.name]
        for account, c in sorted(book.correlations().items()):
            corr.add_metric([str(account)], c.max_ratio)
            lots.add_metric([str(account)], c.correlated_lots)
        call, stop_out = f[m.ACCOUNT_MARGIN_CALL_LEVEL.name], f[m.ACCOUNT_STOP_OUT_LEVEL.name]
        for account, levels in sorted(book.broker_levels().items()):
            ratios = levels.ratios()
            if ratios is not None:
                call.add_metric([str(account)], ratios[0])
                stop_out.add_metric([str(account)], ratios[1])
        return list(f.values())

    def _state(self) -> _State | None:
        """The book as it is now, in immutable pieces (safe to write out on a worker thread); None when
        no book is attached or the cached text is the book's current one."""
        book = self._book
        if book is None:
            return None
        if self._fleet is not None:
            book.observe_fleet(self._fleet())
        cached = self._text
        if cached is not None and cached.version == book.version:
            return None
        return (
            book.version,
            book.tracking_since.timestamp(),
            sorted(book.open_risk().items()),
            sorted((a, (d.peak, d.day_peak)) for a, d in book.drawdowns().items()),
            sorted(book.broker_levels().items()),
            sorted(book.correlations().items()),
        )

    async def prepare(self) -> None:
        """Before a scrape: when the book moved since the last text, the accounts that moved are written
        in a worker thread (all of them, ~30 ms at 10,000 accounts, on the first scrape); `render` then
        finds the text current."""
        async with self._prepare_lock:
            state = self._state()
            if state is not None:
                self._text = await asyncio.to_thread(_write, state, self._text)

    def render(self, encoder: Encoder, content_type: str) -> list[bytes]:
        """The families in the exposition format of `encoder`, as `collect()` encoded would be (without
        the OpenMetrics `# EOF`): the cached text when the book has not moved, else written now."""
        heads = self._heads.get(content_type)
        if heads is None:
            heads = self._heads[content_type] = {n: encode(encoder, [f]) for n, f in _families().items()}
        state = self._state()
        if state is not None:
            self._text = _write(state, self._text)
        bodies = self._text.bodies if self._book is not None and self._text is not None else {}
        parts: list[bytes] = []
        for f in m.RISK_FAMILIES:
            parts.append(heads[f.name])
            parts.append(bodies.get(f.name, b""))
        return parts


# (book version, tracking start, open risk, (peak, day peak), broker levels), each by account, sorted
_State = tuple[
    int,
    float,
    list[tuple[int, OpenRisk]],
    list[tuple[int, tuple[float, float]]],
    list[tuple[int, BrokerLevels]],
    list[tuple[int, AccountCorrelation]],
]


@dataclass(frozen=True, slots=True)
class _Text:
    """The risk text of one book version: the families' bodies, and per account the lines they were
    joined from with the inputs they were written from (reused while those inputs are equal)."""

    version: int
    bodies: dict[str, bytes]
    open_lines: dict[int, tuple[OpenRisk, str, str]]  # account -> (summary, loss line, exposure lines)
    peak_lines: dict[int, tuple[tuple[float, float], str]]  # account -> ((peak, day peak), peak lines)
    level_lines: dict[int, tuple[BrokerLevels, str, str]]  # account -> (levels, call line, stop-out line)


def _write(state: _State, old: _Text | None) -> _Text:
    """The text of `state`, reusing `old`'s lines of every account whose inputs did not change (a pure
    function of its arguments: safe on a worker thread). Labels sorted by name, as both formats write."""
    version, since, open_risk, peaks, broker, correlations = state
    old_open = old.open_lines if old is not None else {}
    old_peaks = old.peak_lines if old is not None else {}
    old_levels = old.level_lines if old is not None else {}
    open_lines: dict[int, tuple[OpenRisk, str, str]] = {}
    loss_prefix = f'{m.ACCOUNT_LARGEST_OPEN_LOSS.series}{{{m.ACCOUNT}="'
    exposure_prefix = f'{m.ACCOUNT_NET_EXPOSURE.series}{{{m.ACCOUNT}="'
    symbol = f'",{m.SYMBOL}="'
    for account, risk in open_risk:
        known = old_open.get(account)
        if known is None or known[0] != risk:
            loss = f'{loss_prefix}{account}"}} {float_text(float(risk.largest_loss))}\n'
            exposure = "".join(
                f'{exposure_prefix}{account}{symbol}{label(name)}"}} {float_text(float(lots))}\n'
                for name, lots in risk.exposure
            )
            known = (risk, loss, exposure)
        open_lines[account] = known
    peak_lines: dict[int, tuple[tuple[float, float], str]] = {}
    peak_prefix = f'{m.ACCOUNT_EQUITY_PEAK.series}{{{m.ACCOUNT}="'
    period = f'",{m.PERIOD}="'
    for account, tops in peaks:
        seen = old_peaks.get(account)
        if seen is None or seen[0] != tops:
            top, day_top = tops
            seen = (
                tops,
                f'{peak_prefix}{account}{period}{_DAY}"}} {float_text(float(day_top))}\n'
                f'{peak_prefix}{account}{period}{_TRACKING}"}} {float_text(float(top))}\n',
            )
        peak_lines[account] = seen
    level_lines: dict[int, tuple[BrokerLevels, str, str]] = {}
    call_prefix = f'{m.ACCOUNT_MARGIN_CALL_LEVEL.series}{{{m.ACCOUNT}="'
    stop_out_prefix = f'{m.ACCOUNT_STOP_OUT_LEVEL.series}{{{m.ACCOUNT}="'
    for account, levels in broker:
        known_levels = old_levels.get(account)
        if known_levels is None or known_levels[0] != levels:
            ratios = levels.ratios()
            if ratios is None:  # money mode: not a margin level, nothing to export
                known_levels = (levels, "", "")
            else:
                known_levels = (
                    levels,
                    f'{call_prefix}{account}"}} {float_text(ratios[0])}\n',
                    f'{stop_out_prefix}{account}"}} {float_text(ratios[1])}\n',
                )
        level_lines[account] = known_levels
    corr_prefix = f'{m.ACCOUNT_POSITION_CORRELATION.series}{{{m.ACCOUNT}="'
    lots_prefix = f'{m.ACCOUNT_CORRELATED_EXPOSURE.series}{{{m.ACCOUNT}="'
    corr_lines = [f'{corr_prefix}{a}"}} {float_text(float(c.max_ratio))}\n' for a, c in correlations]
    lots_lines = [f'{lots_prefix}{a}"}} {float_text(float(c.correlated_lots))}\n' for a, c in correlations]
    bodies = {
        m.ACCOUNT_POSITION_CORRELATION.name: "".join(corr_lines).encode(),
        m.ACCOUNT_CORRELATED_EXPOSURE.name: "".join(lots_lines).encode(),
        m.ACCOUNT_LARGEST_OPEN_LOSS.name: "".join([x[1] for x in open_lines.values()]).encode(),
        m.ACCOUNT_NET_EXPOSURE.name: "".join([x[2] for x in open_lines.values()]).encode(),
        m.ACCOUNT_EQUITY_PEAK.name: "".join([x[1] for x in peak_lines.values()]).encode(),
        m.ACCOUNT_MARGIN_CALL_LEVEL.name: "".join([x[1] for x in level_lines.values()]).encode(),
        m.ACCOUNT_STOP_OUT_LEVEL.name: "".join([x[2] for x in level_lines.values()]).encode(),
        m.RISK_TRACKING_START.name: f"{m.RISK_TRACKING_START.series} {float_text(since)}\n".encode(),
    }
    return _Text(version, bodies, open_lines, peak_lines, level_lines)
