"""The real terminal: a thin adapter over the MetaTrader5 package (Windows only).

The package is imported when the adapter is built, not when this module is imported, so the rest of the
bridge (and --simulate) works everywhere. The package is a process-wide singleton bound to one terminal:
run one bridge process per terminal.
"""

from __future__ import annotations

import importlib
from datetime import datetime
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

from bridge.terminal import AccountInfo, Rate, Terminal, TerminalInfo, TradeDeal, TradePosition

N = TypeVar("N", bound=NamedTuple)


class MetaTrader5NotInstalled(RuntimeError):
    """Raised where the MetaTrader5 package cannot be imported (anything but Windows)."""

    def __init__(self) -> None:
        super().__init__(
            "the MetaTrader5 package is not installed (it exists only on Windows); use --simulate"
        )


def import_metatrader5() -> ModuleType:
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError:
        raise MetaTrader5NotInstalled() from None


def _convert(cls: type[N], value: Any) -> N:
    """Map one of MT5's named tuples onto ours by field name; fields MT5 lacks keep our defaults."""
    fields = value._asdict() if hasattr(value, "_asdict") else dict(value)
    kwargs: dict[str, Any] = {k: fields[k] for k in cls._fields if k in fields}
    make: Any = cls  # mypy cannot call a NamedTuple-bound type variable with keywords
    return make(**kwargs)


class MetaTrader5Terminal(Terminal):
    """The Terminal interface over `import MetaTrader5`. `path` is terminal64.exe (None: the installed
    default); `utc_offset_hours` is the broker server's offset, which MT5 bakes into every time."""

    def __init__(
        self,
        *,
        path: str | None = None,
        name: str = "mt5",
        utc_offset_hours: float = 0.0,
        module: ModuleType | None = None,
    ) -> None:
        self._mt5 = module if module is not None else import_metatrader5()
        self.path = path
        self.name = name
        self.utc_offset_hours = utc_offset_hours

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {
            k: v
            for k, v in (("login", login), ("password", password), ("server", server), ("timeout", timeout))
            if v is not None
        }
        target = path or self.path
        return bool(self._mt5.initialize(target, **kwargs) if target else self._mt5.initialize(**kwargs))

    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {
            k: v
            for k, v in (("password", password), ("server", server), ("timeout", timeout))
            if v is not None
        }
        return bool(self._mt5.login(login, **kwargs))

    def account_info(self) -> AccountInfo | None:
        raw = self._mt5.account_info()
        return None if raw is None else _convert(AccountInfo, raw)

    def positions_get(self) -> tuple[TradePosition, ...] | None:
        raw = self._mt5.positions_get()
        return None if raw is None else tuple(_convert(TradePosition, p) for p in raw)

    def history_deals_get(self, date_from: datetime, date_to: datetime) -> tuple[TradeDeal, ...] | None:
        raw = self._mt5.history_deals_get(date_from, date_to)
        return None if raw is None else tuple(_convert(TradeDeal, d) for d in raw)

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> tuple[Rate, ...] | None:
        """MT5 answers a numpy structured array (fields as `Rate`); the symbol is put in Market Watch
        first, which copy_rates needs."""
        self._mt5.symbol_select(symbol, True)
        raw = self._mt5.copy_rates_from_pos(symbol, timeframe, start_pos, count)
        if raw is None:
            return None
        return tuple(
            Rate(
                int(r["time"]),
                float(r["open"]),
                float(r["high"]),
                float(r["low"]),
                float(r["close"]),
                int(r["tick_volume"]),
                int(r["spread"]),
                int(r["real_volume"]),
            )
            for r in raw
        )

    def terminal_info(self) -> TerminalInfo | None:
        raw = self._mt5.terminal_info()
        return None if raw is None else _convert(TerminalInfo, raw)

    def last_error(self) -> tuple[int, str]:
        code, message = self._mt5.last_error()
        return int(code), str(message)

    def shutdown(self) -> None:
        self._mt5.shutdown()
