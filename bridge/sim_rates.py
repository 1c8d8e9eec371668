"""The simulator's bars (MT5 copy_rates_from_pos): correlated, deterministic, stateless.

Each symbol's log price is a mix of shared factors and its own noise, every component the same fractal
value noise as bridge.sim_market (a random-walk-like process evaluated at any instant without state):
    log(price / base) = volatility * (sum_k loading_k * F_k(t) + sqrt(1 - sum_k loading_k^2) * E_symbol(t))
so the returns of two symbols correlate by the dot product of their loadings (EURUSD/GBPUSD about +0.7,
EURUSD/USDCHF about -0.7, XAUUSD weakly against the dollar). A bar at a given time is the same in every
answer (a pure function of seed, symbol, timeframe and bar time); pos 0 is the bar in progress.
These bars are a model of their own: the desk's trade prices (bridge.sim_market.price_at) do not follow it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridge.terminal import Rate

# MT5's TIMEFRAME_* constants and their length in seconds (the ones the bridge serves).
TIMEFRAMES: dict[str, tuple[int, int]] = {
    "M1": (1, 60),
    "M5": (5, 300),
    "M15": (15, 900),
    "M30": (30, 1800),
    "H1": (16385, 3600),
    "H4": (16388, 14400),
    "D1": (16408, 86400),
}
SECONDS_BY_CODE = {code: seconds for code, seconds in TIMEFRAMES.values()}
FACTORS = ("usd", "metals")


@dataclass(frozen=True)
class RateSymbol:
    name: str
    base_price: float
    digits: int
    volatility: float  # of the log price per unit of noise
    loadings: tuple[float, ...]  # on FACTORS
    spread: int  # points

    @property
    def own(self) -> float:
        """The weight of the symbol's own noise, so the mix has the variance of one noise."""
        return math.sqrt(max(0.0, 1.0 - sum(x * x for x in self.loadings)))


RATE_SYMBOLS: dict[str, RateSymbol] = {
    s.name: s
    for s in (
        RateSymbol("EURUSD", 1.0850, 5, 2.0e-5, (-0.85, 0.0), 8),
        RateSymbol("GBPUSD", 1.2700, 5, 2.5e-5, (-0.80, 0.0), 10),
        RateSymbol("AUDUSD", 0.6550, 5, 2.5e-5, (-0.70, 0.0), 10),
        RateSymbol("USDCHF", 0.8800, 5, 2.0e-5, (0.85, 0.0), 12),
        RateSymbol("USDJPY", 149.50, 3, 2.5e-5, (0.60, 0.0), 12),
        RateSymbol("XAUUSD", 2650.0, 2, 4.0e-5, (-0.40, 0.80), 25),
    )
}

_MASK = (1 << 64) - 1
_OCTAVES = tuple((8.0 * (1 << o), math.sqrt(8.0 * (1 << o))) for o in range(14))  # 8 s to ~36 h
_INTRA = 2  # points per bar the high and low are taken from (besides open and close)


def _noise(seed: int, key: int, t: float) -> float:
    """Fractal value noise at epoch second t (as bridge.sim_market.price_at's, longer octaves)."""
    x = 0.0
    for octave, (period, amplitude) in enumerate(_OCTAVES):
        u = t / period
        k = math.floor(u)
        f = u - k
        f = f * f * (3.0 - 2.0 * f)
        a = (hash((seed, key, octave, k)) & _MASK) / 2**63 - 1.0
        b = (hash((seed, key, octave, k + 1)) & _MASK) / 2**63 - 1.0
        x += (a + (b - a) * f) * amplitude
    return x


def _key(name: str) -> int:
    """A stable int for a name (hash() of a str is salted per process)."""
    return int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "big")


def price(seed: int, symbol: RateSymbol, t: float) -> float:
    mix = symbol.own * _noise(seed, _key(symbol.name), t)
    for factor, loading in zip(FACTORS, symbol.loadings, strict=True):
        if loading:
            mix += loading * _noise(seed, _key("factor:" + factor), t)
    return symbol.base_price * math.exp(symbol.volatility * mix)


def rates(
    seed: int, symbol: str, timeframe: int, start_pos: int, count: int, now_s: float, offset_s: float
) -> tuple[Rate, ...] | None:
    """Bars `start_pos` .. `start_pos + count - 1` back from the one in progress at UTC `now_s`, oldest
    first, times in broker time (UTC + `offset_s`) as MT5 gives them; None for an unknown symbol or
    timeframe (MT5 answers None too)."""
    sym = RATE_SYMBOLS.get(symbol)
    seconds = SECONDS_BY_CODE.get(timeframe)
    if sym is None or seconds is None or start_pos < 0 or count < 1:
        return None
    current = math.floor(now_s / seconds)
    out: list[Rate] = []
    r = sym.digits
    for bar in range(current - start_pos - count + 1, current - start_pos + 1):
        t0 = bar * seconds
        end = min(t0 + seconds, now_s) if bar == current else t0 + seconds
        points = [price(seed, sym, t0 + (end - t0) * i / (_INTRA + 1)) for i in range(_INTRA + 2)]
        volume = 50 + (hash((seed, _key(symbol), bar)) & _MASK) % 400
        out.append(
            Rate(
                time=int(t0 + offset_s),
                open=round(points[0], r),
                high=round(max(points), r),
                low=round(min(points), r),
                close=round(points[-1], r),
                tick_volume=volume,
                spread=sym.spread,
                real_volume=0,
            )
        )
    return tuple(out)
