"""The simulator's market: symbols, and prices that are a pure function of (seed, symbol, instant).

Prices are fractal value noise over time: they wander like a random walk but can be evaluated at any
instant without state, so a trade's whole life can be laid out in advance and read at any time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NOISE_BASE_PERIOD = 8.0  # seconds; octaves double up to ~4.5 h
NOISE_OCTAVES = 11


@dataclass(frozen=True)
class Symbol:
    name: str
    base_price: float
    digits: int
    contract_size: float
    volatility: float  # relative move per sqrt(second)
    usd_base: bool  # USDxxx: profit and margin convert through the price
    swap_long: float = -6.0  # account currency per lot per night, charged at the broker's midnight
    swap_short: float = 1.5


SYMBOLS: tuple[Symbol, ...] = (
    Symbol("EURUSD", 1.0850, 5, 100_000, 2.0e-5, False),
    Symbol("GBPUSD", 1.2700, 5, 100_000, 2.5e-5, False),
    Symbol("USDJPY", 149.50, 3, 100_000, 2.5e-5, True),
    Symbol("XAUUSD", 2650.0, 2, 100, 4.0e-5, False, -25.0, 8.0),
)

_MASK = (1 << 64) - 1


def _unit(a: int, b: int, c: int, d: int) -> float:
    """Deterministic value in [-1, 1) for a lattice point. Hashing a tuple of ints is stable across runs
    (PYTHONHASHSEED only salts str and bytes) and far cheaper than seeding a generator per point."""
    return (hash((a, b, c, d)) & _MASK) / 2**63 - 1.0


_OCTAVES = tuple(
    (NOISE_BASE_PERIOD * (1 << o), math.sqrt(NOISE_BASE_PERIOD * (1 << o))) for o in range(NOISE_OCTAVES)
)


def price_at(seed: int, symbol: int, t: float) -> float:
    """Price of SYMBOLS[symbol] at UTC epoch second t: octaves of smoothed value noise whose amplitude
    grows with sqrt(period), the scaling of a random walk, so it drifts like one but stays bounded.
    Hot (every trade's life is priced when laid out), hence the inlined loop."""
    sym = SYMBOLS[symbol]
    x = 0.0
    for octave, (period, amplitude) in enumerate(_OCTAVES):
        u = t / period
        k = math.floor(u)
        f = u - k
        f = f * f * (3.0 - 2.0 * f)
        a = (hash((seed, symbol, octave, k)) & _MASK) / 2**63 - 1.0
        b = (hash((seed, symbol, octave, k + 1)) & _MASK) / 2**63 - 1.0
        x += (a + (b - a) * f) * amplitude
    return round(sym.base_price * (1.0 + sym.volatility * x), sym.digits)


def pnl(sym: Symbol, buy: bool, volume: float, price_open: float, price_now: float) -> float:
    """Floating or realised profit in the account currency (USD) of `volume` lots."""
    diff = (price_now - price_open) if buy else (price_open - price_now)
    pnl = diff * volume * sym.contract_size
    return pnl / price_now if sym.usd_base else pnl


def margin_of(sym: Symbol, volume: float, price_open: float, leverage: int) -> float:
    notional = volume * sym.contract_size * (1.0 if sym.usd_base else price_open)
    return notional / leverage
