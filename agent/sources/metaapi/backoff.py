"""When to try a MetaAPI connection again: exponential backoff with jitter and a cap, and the server's
own retry time when it rate-limits subscriptions (`TooManyRequestsException`)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


class Backoff:
    """Delay before attempt `n` (0 = the first retry): uniformly in [d/2, d] with
    d = min(cap, base * 2**n) ("equal jitter": reconnects of many accounts spread out, yet none retries
    sooner than half its step, so a dead cloud is not hammered)."""

    def __init__(self, base: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** min(attempt, 60))

    def delay(self, attempt: int) -> float:
        d = self.ceiling(attempt)
        return d / 2 + self.rng() * d / 2


def is_rate_limit(exc: BaseException) -> bool:
    """The SDK's TooManyRequestsException (by name: the SDK is imported lazily, and a fake stands in)."""
    return any(t.__name__ == "TooManyRequestsException" for t in type(exc).__mro__)


def retry_after(exc: BaseException, now: datetime, limit: float) -> float | None:
    """Seconds until the server's `recommendedRetryTime` (ISO-8601) for a rate-limit error, within
    [0, limit]; None when `exc` is no rate limit or carries no usable time."""
    if not is_rate_limit(exc):
        return None
    metadata: Any = getattr(exc, "metadata", None)
    value = metadata.get("recommendedRetryTime") if isinstance(metadata, dict) else None
    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return min(max((at - now).total_seconds(), 0.0), limit)
