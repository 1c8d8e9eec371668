"""Correlation of an account's open positions (issue 14, DESIGN.md 12).

Window: the Pearson correlation of the log returns of the last WINDOW_BARS (100) M5 bars' closes, i.e.
about 8 hours of market, from the bridge's `/rates` (the broker's own prices, read through an account of
that bridge that holds the symbol). Refreshed every REFRESH_SECONDS (60 s): each symbol's bars are read
once per refresh per source, each symbol pair's correlation is cached and computed again only when
either series changed.

What is exported (per account, only with two or more symbols open; bounded by the fleet, never one series
per symbol pair):
- mt5_account_position_correlation_max_ratio: the highest direction-adjusted correlation of two open
  symbols, rho(a, b) * sign(net lots a) * sign(net lots b): +0.7 for long EURUSD and long GBPUSD (the
  risks add up), -0.7 for long EURUSD and long USDCHF (a hedge).
- mt5_account_correlated_exposure_lots: the net lots (absolute) of the open symbols that move with another
  open symbol of the account, a direction-adjusted correlation of CORRELATED_AT (0.5) or more.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import StatisticsError, correlation
from typing import Protocol

from agent.domain.tasks import cancel_and_wait
from agent.risk.book import OTHER_SYMBOLS, RiskBook
from agent.sync.fleet import FleetSnapshot

log = logging.getLogger("mt5_agent.risk")

TIMEFRAME = "M5"
WINDOW_BARS = 100  # returns: WINDOW_BARS + 1 closes are read
MIN_RETURNS = 30  # fewer returns in common: no correlation (too noisy to show)
REFRESH_SECONDS = 60.0
CORRELATED_AT = 0.5
MAX_SYMBOLS_PER_SOURCE = 64  # bars read per refresh and source, at most (the most held symbols first)
REQUEST_CONCURRENCY = 4


class RatesReader(Protocol):
    """What the tracker reads bars through: `agent.sources.bridge.BridgeClient.rates`."""

    async def rates(
        self, account: int, symbol: str, timeframe: str = ..., count: int = ...
    ) -> tuple[tuple[datetime, float], ...]: ...


def log_returns(bars: Sequence[tuple[datetime, float]]) -> dict[datetime, float]:
    """Log return of each bar over the one before it, keyed by the bar's time (so two symbols' returns are
    paired by time, a bar missing in one is left out of both)."""
    return {
        bars[i][0]: math.log(bars[i][1] / bars[i - 1][1])
        for i in range(1, len(bars))
        if bars[i][1] > 0 and bars[i - 1][1] > 0
    }


def pearson(a: Mapping[datetime, float], b: Mapping[datetime, float]) -> float | None:
    """Pearson correlation of the returns both have (by time), over the last WINDOW_BARS of them; None
    with fewer than MIN_RETURNS or when either is constant."""
    common = sorted(a.keys() & b.keys())[-WINDOW_BARS:]
    if len(common) < MIN_RETURNS:
        return None
    try:
        return correlation([a[t] for t in common], [b[t] for t in common])
    except StatisticsError:  # a constant series
        return None


@dataclass(frozen=True, slots=True)
class AccountCorrelation:
    max_ratio: float  # highest direction-adjusted correlation of two open symbols
    correlated_lots: float  # absolute net lots of the symbols moving with another one (>= CORRELATED_AT)


def account_correlation(
    exposure: Sequence[tuple[str, float]], rho: Callable[[str, str], float | None]
) -> AccountCorrelation | None:
    """From an account's net lots per symbol and the symbols' correlations; None with fewer than two
    symbols whose correlation is known."""
    legs = [(s, lots) for s, lots in exposure if s != OTHER_SYMBOLS and lots]
    best: float | None = None
    moving: set[str] = set()
    for i, (a, lots_a) in enumerate(legs):
        for b, lots_b in legs[i + 1 :]:
            r = rho(a, b)
            if r is None:
                continue
            directed = r * math.copysign(1.0, lots_a) * math.copysign(1.0, lots_b)
            best = directed if best is None else max(best, directed)
            if directed >= CORRELATED_AT:
                moving.update((a, b))
    if best is None:
        return None
    lots = sum(abs(x) for s, x in legs if s in moving)
    return AccountCorrelation(round(best, 6), round(lots, 8))


class CorrelationTracker:
    """Reads bars for the symbols the fleet's accounts hold open (via the risk book), keeps each symbol's
    returns and each pair's correlation, and hands each account's result to the book. One task."""

    def __init__(
        self,
        book: RiskBook,
        fleet: Callable[[], FleetSnapshot],
        readers: Mapping[str, RatesReader],
        *,
        period: float = REFRESH_SECONDS,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book
        self.fleet = fleet
        self.readers = dict(readers)  # source name -> its bridge client
        self.period = period
        self.timeout = timeout
        self.clock = clock
        self._returns: dict[tuple[str, str], dict[datetime, float]] = {}  # (source, symbol) -> returns
        self._pairs: dict[tuple[str, str, str], float | None] = {}  # (source, a, b), a < b
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0
        self.symbols_read = 0  # bars read in the last round

    def rho(self, source: str, a: str, b: str) -> float | None:
        if a == b:
            return 1.0
        key = (source, a, b) if a < b else (source, b, a)
        if key not in self._pairs:
            ra, rb = self._returns.get((source, key[1])), self._returns.get((source, key[2]))
            self._pairs[key] = pearson(ra, rb) if ra is not None and rb is not None else None
        return self._pairs[key]

    async def refresh(self) -> None:
        """One round: bars of every held symbol (per source), then every account's result to the book."""
        snap = self.fleet()
        exposures = self.book.open_risk()
        wanted: dict[str, dict[str, int]] = {}  # source -> symbol -> an account holding it
        held: dict[str, dict[str, int]] = {}  # source -> symbol -> how many accounts hold it
        for account, risk in exposures.items():
            row = snap.accounts.get(account)
            source = row.source if row is not None else None
            if source is None or source not in self.readers or len(risk.exposure) < 2:
                continue
            for symbol, lots in risk.exposure:
                if symbol != OTHER_SYMBOLS and lots:
                    wanted.setdefault(source, {}).setdefault(symbol, account)
                    counts = held.setdefault(source, {})
                    counts[symbol] = counts.get(symbol, 0) + 1
        semaphore = asyncio.Semaphore(REQUEST_CONCURRENCY)

        async def read(source: str, symbol: str, account: int) -> None:
            async with semaphore:
                try:
                    async with asyncio.timeout(self.timeout):
                        bars = await self.readers[source].rates(account, symbol, TIMEFRAME, WINDOW_BARS + 1)
                except Exception as exc:  # a symbol without bars is left out; never the tracker's end
                    log.debug("rates of %s via account %s (%s): %s", symbol, account, source, exc)
                    self._returns.pop((source, symbol), None)
                    return
                self._returns[(source, symbol)] = log_returns(bars)

        jobs = []
        for name, symbols in wanted.items():
            counts = held[name]
            top = sorted(symbols, key=lambda s: (-counts[s], s))[:MAX_SYMBOLS_PER_SOURCE]
            jobs += [read(name, s, symbols[s]) for s in top]
        await asyncio.gather(*jobs)
        self.symbols_read = len(jobs)
        self._pairs.clear()  # the returns moved: correlations are computed again on demand
        results: dict[int, AccountCorrelation] = {}
        for account, risk in exposures.items():
            row = snap.accounts.get(account)
            source = row.source if row is not None else None
            if source is None or source not in self.readers:
                continue
            result = account_correlation(risk.exposure, functools.partial(self.rho, source))
            if result is not None:
                results[account] = result
        self.book.set_correlations(results)
        self.refreshes += 1

    async def run(self) -> None:
        """A round every `period`; sooner (period / 12) while no account holds two symbols yet (at start,
        the positions poller's first round may not have landed)."""
        while True:
            started = self.clock()
            try:
                await self.refresh()
            except Exception:
                log.exception("position correlation refresh failed")
            period = self.period if self.symbols_read else self.period / 12
            await asyncio.sleep(max(0.0, period - (self.clock() - started)))

    def start(self) -> None:
        if self._task is None and self.readers:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="risk-correlation")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
