"""Exact money: amounts are summed as integers of 10**-6 of the account currency (micro-units).

A terminal reports money as floats that stand for decimals with at most a few places (2 for most
currencies). `to_units` recovers that decimal exactly as an integer: round(x * 10**6) is exact while
|x| < 2**51 / 10**6 (about 2.2e9) and x has at most 6 decimals. Outside that, the float's shortest
decimal repr is taken as a Decimal (slower, still exact), so sums are never rounded on the way. Plain
ints are ~4x faster than Decimal, which keeps 100,000 deals well under the 200 ms budget.
"""

from __future__ import annotations

from decimal import Decimal

SCALE = 1_000_000
_EXACT_SCALED = 2.0e15  # |x| * SCALE below 2**51: the float's error is far below half a unit

Units = int | Decimal  # Decimal only for amounts beyond the integer fast path


def to_units(x: float) -> Units:
    """A float amount as exact micro-units (ValueError for NaN or infinity)."""
    scaled = x * SCALE
    units = round(scaled) if -_EXACT_SCALED < scaled < _EXACT_SCALED else None
    if units is not None and -1e-3 < units - scaled < 1e-3:  # at most 6 decimals: exact
        return units
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite amount: {x!r}")
    return Decimal(repr(x)) * SCALE


def to_decimal(units: Units) -> Decimal:
    """Micro-units back to an exact Decimal amount (6 places: 125.300000 == Decimal("125.3"))."""
    return Decimal(units).scaleb(-6)
