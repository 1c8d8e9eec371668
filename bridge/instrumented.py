"""A Terminal that times and classifies every MT5 call of the one it wraps, for the bridge's metrics.

It runs on the terminal's worker thread, like the calls themselves. `current` names the call in
progress, so when a request gives up on a hung terminal the pool can say which function hung.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from bridge.metrics import BridgeMetrics
from bridge.terminal import (
    CONNECTION_ERROR_CODES,
    RES_E_AUTH_FAILED,
    RES_S_OK,
    AccountInfo,
    Terminal,
    TerminalInfo,
    TradeDeal,
    TradePosition,
)

T = TypeVar("T")


class InstrumentedTerminal(Terminal):
    """Delegates to `inner`; observes each call's duration and counts the failed ones by reason."""

    def __init__(self, inner: Terminal, metrics: BridgeMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self.name = inner.name
        self.utc_offset_hours = inner.utc_offset_hours
        self.current: str | None = None  # the call running right now
        self.last: str | None = None  # the last call started

    def _reason(self, *, auth: bool = False) -> str:
        code, _ = self.inner.last_error()
        if code in CONNECTION_ERROR_CODES:
            return "disconnected"
        if auth and code == RES_E_AUTH_FAILED:
            return "login_failed"
        return "other"

    def _timed(self, function: str, call: Callable[[], T], failed: Callable[[T], str | None]) -> T:
        self.current = self.last = function
        start = time.perf_counter()
        try:
            result = call()
        except BaseException:
            self.metrics.failure(function, "other")
            raise
        finally:
            self.metrics.observe_call(function, time.perf_counter() - start)
            self.current = None
        reason = failed(result)
        if reason is not None:
            self.metrics.failure(function, reason)
        return result

    def _no_data(self, result: object) -> str | None:
        if result is not None:
            return None
        reason = self._reason()
        return "no_data" if reason == "other" else reason

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        return self._timed(
            "initialize",
            lambda: self.inner.initialize(
                path, login=login, password=password, server=server, timeout=timeout
            ),
            lambda ok: None if ok else self._reason(auth=login is not None),
        )

    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        return self._timed(
            "login",
            lambda: self.inner.login(login, password=password, server=server, timeout=timeout),
            lambda ok: None if ok else self._reason(auth=True),
        )

    def account_info(self) -> AccountInfo | None:
        return self._timed("account_info", self.inner.account_info, self._no_data)

    def positions_get(self) -> tuple[TradePosition, ...] | None:
        return self._timed("positions_get", self.inner.positions_get, self._no_data)

    def history_deals_get(self, date_from: datetime, date_to: datetime) -> tuple[TradeDeal, ...] | None:
        def failed(deals: tuple[TradeDeal, ...] | None) -> str | None:
            if deals is None and self.inner.last_error()[0] == RES_S_OK:
                return None  # MT5's "nothing in that window"
            return self._no_data(deals)

        return self._timed(
            "history_deals_get", lambda: self.inner.history_deals_get(date_from, date_to), failed
        )

    def terminal_info(self) -> TerminalInfo | None:
        def failed(info: TerminalInfo | None) -> str | None:
            if info is None:
                return self._reason()
            return None if info.connected else "disconnected"

        return self._timed("terminal_info", self.inner.terminal_info, failed)

    def last_error(self) -> tuple[int, str]:
        return self.inner.last_error()

    def shutdown(self) -> None:
        self._timed("shutdown", self.inner.shutdown, lambda _: None)

    def release(self) -> None:
        self.inner.release()
