"""Store operation durations (`mt5_store_operation_duration_seconds`), measured by a transparent proxy so
no store implementation carries metrics code."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

from agent.telemetry.catalog import STORE_OPERATIONS


class TimedStore:
    """Times the store's operations (the catalog's STORE_OPERATIONS); everything else passes through."""

    def __init__(self, inner: Any, observe: Callable[[str, float], None]) -> None:
        self.inner = inner
        self._observe = observe
        # name -> (function, instance it is bound to, its timed wrapper): an API read per request
        # must not pay functools.wraps and inspect on every call.
        self._timed: dict[str, tuple[Any, Any, Any]] = {}

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in STORE_OPERATIONS:
            return attr
        func, bound_to = getattr(attr, "__func__", attr), getattr(attr, "__self__", None)
        cached = self._timed.get(name)
        if cached is not None and cached[0] is func and cached[1] is bound_to:
            return cached[2]
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attr(*args, **kwargs)
            finally:
                self._observe(name, time.perf_counter() - started)

        self._timed[name] = (func, bound_to, timed)
        return timed
