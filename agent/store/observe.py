"""Timing of store operations, reported by the store itself: each public operation of a backend and of its
concerns calls the observer its connection holds (none by default) with its name and duration, so
telemetry needs no proxy around the store and sees the concern stores too (`store.accounts.get_accounts`
is reported as `get_accounts`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# (operation, seconds): called once per operation, failed ones included.
OperationObserver = Callable[[str, float], None]


def operation(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Report the decorated method's duration as `name` to `self._db.observe` when one is set."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            observe = args[0]._db.observe  # type: ignore[attr-defined]
            if observe is None:
                return await fn(*args, **kwargs)
            started = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                observe(name, time.perf_counter() - started)

        return timed

    return decorate
