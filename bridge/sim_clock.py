"""The simulated desk's clock: wall time, or a time-shifted and time-accelerated one for demos and tests.

`sim = start + scale * (wall - anchor)`. Because the desk is a pure function of (seed, clock), a bridge
restarted with the same start, anchor and scale serves the same history at the same instants: a test
can kill and restart it mid-run, and recompute the ground truth in its own process.

An agent refuses a source time ahead of its own clock (beyond its skew tolerance), so an accelerated
clock must start far enough in the past: `overtakes_wall_at` says when it would catch up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_SCALE = 10_000.0


@dataclass(frozen=True)
class SimClock:
    start: float  # simulated UTC epoch seconds at `anchor`
    anchor: float  # wall-clock UTC epoch seconds
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.scale <= MAX_SCALE:
            raise ValueError(f"time scale must be > 0 and <= {MAX_SCALE:g}, got {self.scale:g}")

    def at(self, wall: float) -> float:
        return self.start + self.scale * (wall - self.anchor)

    def now(self) -> float:
        return self.at(time.time())

    def wall_for(self, sim: float) -> float:
        """The wall time at which the simulated clock shows `sim`."""
        return self.anchor + (sim - self.start) / self.scale

    def overtakes_wall_at(self) -> float | None:
        """The wall time from which the simulated clock is ahead of the wall clock (None: never, or
        already: see `ahead_now`)."""
        if self.scale <= 1.0:
            return None
        wall = self.anchor + (self.anchor - self.start) / (self.scale - 1.0)
        return wall if wall > time.time() else None

    def ahead_now(self) -> float:
        """Seconds the simulated clock is ahead of the wall clock now (negative: behind)."""
        wall = time.time()
        return self.at(wall) - wall


def parse_instant(text: str, *, now: float | None = None) -> float:
    """UTC epoch seconds from ISO-8601 (a naive time is UTC), epoch seconds, or a time relative to now
    such as `-6h`, `-90m`, `-30s`, `-2d`."""
    value = text.strip()
    if not value:
        raise ValueError("empty time")
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[0] in "+-" and value[-1] in units:
        try:
            amount = float(value[:-1])
        except ValueError:
            raise ValueError(f"expected a relative time such as -6h, got {text!r}") from None
        return (time.time() if now is None else now) + amount * units[value[-1]]
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 time, epoch seconds or a relative time such as -6h, got {text!r}"
        ) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
