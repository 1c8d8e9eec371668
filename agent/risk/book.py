"""The risk read model (DESIGN.md 12): what the risk metrics show, kept in memory so a scrape reads it
without touching the store.

- Open positions: every snapshot the positions poller stores goes through `PositionsTap`, which hands it
  here after the store took it; the book keeps per account only its summary (largest open loss, net
  volume per symbol), computed once per write. Nothing is read at start: the poller's first round
  (one period, 0.25-1 s) replaces every account's snapshot.
- Equity peaks: fed with the fleet (the balance sync's account values) after every sync run and at every
  scrape; one sample per account and `live_data_at`. In memory only, not persisted: "since tracking
  started" means since this agent process started (`tracking_since`), and the day's peak is per UTC day
  of the samples' `live_data_at` (the broker's day offset is not known to the sync).
- The broker's margin call and stop-out levels (issue 14): read from the sources that report them
  (`levels_from`, a bridge source's `broker_levels`) at each new fleet version, for the fleet's accounts.
- `version` moves whenever any of that changes what the metrics show: the risk text is cached on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from agent.domain.accounts import BrokerLevels
from agent.domain.trades import PositionsSnapshot, PositionType
from agent.store.base import PositionStore, Store
from agent.sync.fleet import FleetSnapshot

OTHER_SYMBOLS = "other"
SYMBOLS_PER_ACCOUNT = 10  # symbol label values per account; the rest are summed into `other`
_MAX_SYMBOL_LEN = 32


@dataclass(frozen=True, slots=True)
class OpenRisk:
    """One account's open positions, summarised at its last stored snapshot."""

    largest_loss: float  # the worst position's loss (profit + swap), as a positive amount; 0 when none
    exposure: tuple[tuple[str, float], ...]  # (symbol or `other`, net lots: buy minus sell), largest first
    positions: int


@dataclass(slots=True)
class EquityPeaks:
    equity: float  # the last sample
    at: datetime  # its live_data_at
    peak: float  # since tracking started
    day: date  # UTC day of `day_peak`
    day_peak: float


@dataclass(frozen=True, slots=True)
class Drawdown:
    equity: float
    peak: float
    day_peak: float

    @staticmethod
    def ratio(peak: float, equity: float) -> float | None:
        """(peak - equity) / peak; None when the peak is not positive (a ratio would mean nothing)."""
        if peak <= 0:
            return None
        return max(0.0, (peak - equity) / peak)


def _symbol(raw: str) -> str:
    """A symbol as a label value: printable, short; anything else is `other` (never a new series)."""
    s = raw.strip()
    if not s or len(s) > _MAX_SYMBOL_LEN or not s.isprintable() or s == OTHER_SYMBOLS:
        return OTHER_SYMBOLS
    return s


def summarise(snapshot: PositionsSnapshot, symbols: int = SYMBOLS_PER_ACCOUNT) -> OpenRisk:
    """Largest open loss and net exposure per symbol: the `symbols` largest by absolute net volume
    keep their name, the others are summed as `other` (so an account exports at most symbols + 1)."""
    worst = 0.0
    net: dict[str, float] = {}
    for p in snapshot.positions:
        result = p.profit + p.swap
        if math.isfinite(result) and result < worst:
            worst = result
        if not math.isfinite(p.volume):
            continue
        sign = 1.0 if p.type is PositionType.BUY else -1.0
        name = _symbol(p.symbol)
        net[name] = net.get(name, 0.0) + sign * p.volume
    named = sorted(
        ((s, v) for s, v in net.items() if s != OTHER_SYMBOLS), key=lambda sv: (-abs(sv[1]), sv[0])
    )
    kept = named[:symbols]
    rest = [v for _, v in named[symbols:]]
    if OTHER_SYMBOLS in net:
        rest.append(net[OTHER_SYMBOLS])
    exposure = [(s, round(v, 8)) for s, v in kept]
    if rest:
        exposure.append((OTHER_SYMBOLS, round(sum(rest), 8)))
    return OpenRisk(largest_loss=-worst, exposure=tuple(exposure), positions=len(snapshot.positions))


class RiskBook:
    """Per account: the open-position summary and the equity peaks. Single event loop; never raises into
    a writer (the tap) or a scrape."""

    def __init__(
        self,
        *,
        symbols_per_account: int = SYMBOLS_PER_ACCOUNT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if symbols_per_account < 1:
            raise ValueError("symbols_per_account must be at least 1")
        self.symbols_per_account = symbols_per_account
        self.clock = clock
        self.tracking_since = clock()
        self._open: dict[int, OpenRisk] = {}
        self._equity: dict[int, EquityPeaks] = {}
        self._fleet_version: int | None = None
        self._level_sources: list[Mapping[int, BrokerLevels]] = []
        self._levels: dict[int, BrokerLevels] = {}
        self._correlations: Mapping[int, Any] = {}  # account -> correlation.AccountCorrelation
        # Moves whenever what the risk metrics show moves (a summary, a peak, an account gone): a scrape
        # that finds it unchanged reuses the last text (issue 17). The last equity alone does not move it.
        self.version = 0

    # --- writers -----------------------------------------------------------------------------------

    def on_positions(self, snapshot: PositionsSnapshot) -> None:
        summary = summarise(snapshot, self.symbols_per_account)
        if self._open.get(snapshot.account) != summary:
            self._open[snapshot.account] = summary
            self.version += 1

    def levels_from(self, levels: Mapping[int, BrokerLevels]) -> None:
        """Read the broker's margin levels from `levels` (a source's, updated in place by its reads) at
        each new fleet version; the first source holding an account wins, as for the fleet."""
        self._level_sources.append(levels)

    def observe_fleet(self, snap: FleetSnapshot) -> None:
        """Take each account's equity as a sample (once per `live_data_at`); forget accounts gone from
        the fleet (positions too: the fleet bounds every per-account series)."""
        if snap.version == self._fleet_version:
            return
        self._fleet_version = snap.version
        accounts = snap.accounts
        for gone in [a for a in self._equity if a not in accounts]:
            del self._equity[gone]
            self.version += 1
        for gone in [a for a in self._open if a not in accounts]:
            del self._open[gone]
            self.version += 1
        if self._level_sources:
            self._observe_levels(accounts)
        for account, row in accounts.items():
            values, at = row.values, row.live_data_at
            if values is None or values.equity is None or at is None or not math.isfinite(values.equity):
                continue
            self.sample(account, float(values.equity), at)

    def _observe_levels(self, accounts: Mapping[int, Any]) -> None:
        levels: dict[int, BrokerLevels] = {}
        for source in reversed(self._level_sources):  # the first source's entries written last: they win
            levels.update((a, lv) for a, lv in source.items() if a in accounts)
        if levels != self._levels:
            self._levels = levels
            self.version += 1

    def sample(self, account: int, equity: float, at: datetime) -> None:
        at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
        day = at.astimezone(UTC).date()
        known = self._equity.get(account)
        if known is None:
            self._equity[account] = EquityPeaks(equity, at, equity, day, equity)
            self.version += 1
            return
        if at <= known.at:
            return  # the same sample again (or an older one): peaks move only forward in time
        before = (known.peak, known.day_peak)
        known.equity, known.at = equity, at
        known.peak = max(known.peak, equity)
        if day != known.day:
            known.day, known.day_peak = day, equity
        else:
            known.day_peak = max(known.day_peak, equity)
        if (known.peak, known.day_peak) != before:
            self.version += 1

    # --- readers -----------------------------------------------------------------------------------

    def open_risk(self) -> Mapping[int, OpenRisk]:
        return self._open

    def set_correlations(self, results: Mapping[int, Any]) -> None:
        """The correlation tracker's last results (agent.risk.correlation), for the fleet's accounts."""
        if results != self._correlations:
            self._correlations = results
            self.version += 1

    def correlations(self) -> Mapping[int, Any]:
        return self._correlations

    def broker_levels(self) -> Mapping[int, BrokerLevels]:
        """Per account of the fleet: the broker's margin levels its source last reported."""
        return self._levels

    def drawdowns(self) -> dict[int, Drawdown]:
        """Per account: last equity, peak since tracking started, and the peak of the UTC day of the last
        sample (the day turns with the first sample dated in it, not with the agent's clock: a terminal's
        clock may be hours off the agent's)."""
        return {a: Drawdown(e.equity, e.peak, e.day_peak) for a, e in self._equity.items()}


class PositionsTap:
    """A `PositionStore` that tells the book every snapshot the store kept (after the write succeeded)."""

    def __init__(self, inner: PositionStore, book: RiskBook) -> None:
        self._inner = inner
        self._book = book

    async def replace_positions(self, account: int, snapshot: PositionsSnapshot) -> PositionsSnapshot:
        stored = await self._inner.replace_positions(account, snapshot)
        self._book.on_positions(stored)
        return stored

    async def get_positions(self, account: int) -> PositionsSnapshot | None:
        return await self._inner.get_positions(account)

    async def get_all_positions(self) -> dict[int, PositionsSnapshot]:
        return await self._inner.get_all_positions()


class TappedStore:
    """`store` with its positions concern tapped: what the positions poller is given. Everything else is
    the store's own (attributes are looked up on it)."""

    def __init__(self, store: Store, book: RiskBook) -> None:
        self._store = store
        self.positions = PositionsTap(store.positions, book)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def tap(store: Store, book: RiskBook) -> Store:
    return TappedStore(store, book)
