"""The one definition of data freshness (DESIGN.md section 6).

The agent's classification, the alert rules and the dashboard thresholds are all generated from
`Thresholds`, so they cannot drift apart. `classify` is the one function that says how fresh an account
is (the API and the metrics both call it); `age_seconds` is the age it classifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class State(StrEnum):
    FRESH = "fresh"
    ACCEPTABLE = "acceptable"
    DEGRADED = "degraded"
    CRITICAL = "critical"


STATES: tuple[State, ...] = (State.FRESH, State.ACCEPTABLE, State.DEGRADED, State.CRITICAL)


@dataclass(frozen=True)
class Thresholds:
    """Upper bounds in seconds: fresh < acceptable_after <= acceptable < degraded_after <= ... ."""

    acceptable_after: float = 300.0
    degraded_after: float = 600.0
    critical_after: float = 900.0

    def __post_init__(self) -> None:
        values = (self.acceptable_after, self.degraded_after, self.critical_after)
        if not all(v > 0 for v in values) or not (values[0] < values[1] < values[2]):
            raise ValueError(
                "freshness thresholds must be three increasing positive numbers of seconds, "
                f"got {','.join(f'{v:g}' for v in values)}"
            )

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """Parse `300,600,900` (seconds)."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) != 3:
            raise ValueError(f"expected three comma-separated seconds like 300,600,900, got {text!r}")
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"expected numbers of seconds like 300,600,900, got {text!r}") from None
        return cls(*nums)

    def __str__(self) -> str:
        return f"{self.acceptable_after:g},{self.degraded_after:g},{self.critical_after:g}"

    def classify(self, age_seconds: float | None) -> State:
        """State for an age; `None` (never synced live) is critical."""
        if age_seconds is None or age_seconds >= self.critical_after:
            return State.CRITICAL
        if age_seconds >= self.degraded_after:
            return State.DEGRADED
        if age_seconds >= self.acceptable_after:
            return State.ACCEPTABLE
        return State.FRESH


def age_seconds(live_data_at: datetime | None, now: datetime) -> float | None:
    """Age of the last live data; never negative (clock skew is clamped to 0)."""
    if live_data_at is None:
        return None
    return max(0.0, (now - live_data_at).total_seconds())


def classify(live_data_at: datetime | None, now: datetime, thresholds: Thresholds) -> State:
    """An account's freshness state at `now` from the time of its last live data (None: critical)."""
    return thresholds.classify(age_seconds(live_data_at, now))
