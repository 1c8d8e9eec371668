"""A Terminal that times and classifies every MT5 call of the one it wraps, for the bridge's metrics.

It runs on the terminal's worker thread, like the calls themselves. `current` names the call in
progress, so when a request gives up on a hung terminal the pool can say which function hung.

A batch read makes three calls per account (login, terminal_info, account_info), so the timing is kept
cheap: each function's histogram child is looked up once, not per call, and the calls a read makes are
timed inline instead of through closures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from bridge.metrics import TERMINAL_FUNCTIONS, BridgeMetrics
from bridge.terminal import (
    CONNECTION_ERROR_CODES,
    RES_E_AUTH_FAILED,
    RES_S_OK,
    AccountInfo,
    Rate,
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
        self._observe = {f: metrics.call_observer(f) for f in TERMINAL_FUNCTIONS}

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
            self._observe[function](time.perf_counter() - start)
            self.current = None
        reason = failed(result)
        if reason is not None:
            self.metrics.failure(function, reason)
        return result

    def _no_data(self, result: object) -> str | None:
        return None if result is not None else self._no_data_reason()

    def _no_data_reason(self) -> str:
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
        # _timed, inlined (as in account_info and terminal_info): a batch makes this call per account
        self.current = self.last = "login"
        start = time.perf_counter()
        try:
            ok = self.inner.login(login, password=password, server=server, timeout=timeout)
        except BaseException:
            self.metrics.failure("login", "other")
            raise
        finally:
            self._observe["login"](time.perf_counter() - start)
            self.current = None
        if not ok:
            self.metrics.failure("login", self._reason(auth=True))
        return ok

    def account_info(self) -> AccountInfo | None:
        self.current = self.last = "account_info"
        start = time.perf_counter()
        try:
            info = self.inner.account_info()
        except BaseException:
            self.metrics.failure("account_info", "other")
            raise
        finally:
            self._observe["account_info"](time.perf_counter() - start)
            self.current = None
        if info is None:
            self.metrics.failure("account_info", self._no_data_reason())
        return info

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

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> tuple[Rate, ...] | None:
        return self._timed(
            "copy_rates_from_pos",
            lambda: self.inner.copy_rates_from_pos(symbol, timeframe, start_pos, count),
            self._no_data,
        )

    def terminal_info(self) -> TerminalInfo | None:
        self.current = self.last = "terminal_info"
        start = time.perf_counter()
        try:
            info = self.inner.terminal_info()
        except BaseException:
            self.metrics.failure("terminal_info", "other")
            raise
        finally:
            self._observe["terminal_info"](time.perf_counter() - start)
            self.current = None
        if info is None:
            self.metrics.failure("terminal_info", self._reason())
        elif not info.connected:
            self.metrics.failure("terminal_info", "disconnected")
        return info

    def last_error(self) -> tuple[int, str]:
        return self.inner.last_error()

    def shutdown(self) -> None:
        self._timed("shutdown", self.inner.shutdown, lambda _: None)

    def now(self) -> datetime:
        return self.inner.now()

    def release(self) -> None:
        self.inner.release()
