"""The terminal interface: the subset of the MetaTrader5 Python API the bridge uses.

Field names and method signatures mirror the MetaTrader5 package so the real adapter is a thin mapping and
the simulator can stand in for it. Methods are blocking, like the real package; the bridge runs them on a
dedicated thread per terminal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

# MetaTrader5 result codes (MetaTrader5.last_error()[0]) the bridge tells apart.
RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_AUTH_FAILED = -6
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005
# -10000..-10005: IPC/connection failures between the package and the terminal.
CONNECTION_ERROR_CODES = frozenset(range(-10005, -9999))

# Enum values from the MetaTrader5 package (checked against its wheel by tests/bridge/test_mt5_constants.py).
POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1
POSITION_REASON_CLIENT = 0
POSITION_REASON_MOBILE = 1
POSITION_REASON_WEB = 2
POSITION_REASON_EXPERT = 3
DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_TYPE_BALANCE = 2  # deposits and withdrawals
DEAL_TYPE_CREDIT = 3
DEAL_TYPE_CHARGE = 4
DEAL_TYPE_CORRECTION = 5
DEAL_TYPE_BONUS = 6
DEAL_TYPE_COMMISSION = 7
DEAL_TYPE_COMMISSION_DAILY = 8
DEAL_TYPE_COMMISSION_MONTHLY = 9
DEAL_TYPE_COMMISSION_AGENT_DAILY = 10
DEAL_TYPE_COMMISSION_AGENT_MONTHLY = 11
DEAL_TYPE_INTEREST = 12
DEAL_TYPE_BUY_CANCELED = 13
DEAL_TYPE_SELL_CANCELED = 14
DEAL_DIVIDEND = 15  # the package drops TYPE_ from these three names
DEAL_DIVIDEND_FRANKED = 16
DEAL_TAX = 17
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2  # a reversal (netting)
DEAL_ENTRY_OUT_BY = 3  # closed by an opposite position (hedging)
DEAL_REASON_CLIENT = 0
DEAL_REASON_MOBILE = 1
DEAL_REASON_WEB = 2
DEAL_REASON_EXPERT = 3
DEAL_REASON_SL = 4
DEAL_REASON_TP = 5
DEAL_REASON_SO = 6  # stop out
DEAL_REASON_ROLLOVER = 7
DEAL_REASON_VMARGIN = 8
DEAL_REASON_SPLIT = 9


class AccountInfo(NamedTuple):
    """MetaTrader5.account_info(), same fields and order."""

    login: int
    trade_mode: int = 0
    leverage: int = 0
    limit_orders: int = 0
    margin_so_mode: int = 0
    trade_allowed: bool = False
    trade_expert: bool = False
    margin_mode: int = 0
    currency_digits: int = 2
    fifo_close: bool = False
    balance: float = 0.0
    credit: float = 0.0
    profit: float = 0.0
    equity: float = 0.0
    margin: float = 0.0
    margin_free: float = 0.0
    margin_level: float = 0.0
    margin_so_call: float = 0.0
    margin_so_so: float = 0.0
    margin_initial: float = 0.0
    margin_maintenance: float = 0.0
    assets: float = 0.0
    liabilities: float = 0.0
    commission_blocked: float = 0.0
    name: str = ""
    server: str = ""
    currency: str = ""
    company: str = ""


class TradePosition(NamedTuple):
    """One entry of MetaTrader5.positions_get(); times are broker (server) time."""

    ticket: int
    time: int = 0
    time_msc: int = 0
    time_update: int = 0
    time_update_msc: int = 0
    type: int = 0
    magic: int = 0
    identifier: int = 0
    reason: int = 0
    volume: float = 0.0
    price_open: float = 0.0
    sl: float = 0.0
    tp: float = 0.0
    price_current: float = 0.0
    swap: float = 0.0
    profit: float = 0.0
    symbol: str = ""
    comment: str = ""
    external_id: str = ""


class TradeDeal(NamedTuple):
    """One entry of MetaTrader5.history_deals_get(); `time` is broker (server) time in epoch seconds."""

    ticket: int
    order: int = 0
    time: int = 0
    time_msc: int = 0
    type: int = 0
    entry: int = 0
    magic: int = 0
    position_id: int = 0
    reason: int = 0
    volume: float = 0.0
    price: float = 0.0
    commission: float = 0.0
    swap: float = 0.0
    profit: float = 0.0
    fee: float = 0.0
    symbol: str = ""
    comment: str = ""
    external_id: str = ""


class TerminalInfo(NamedTuple):
    """The subset of MetaTrader5.terminal_info() the bridge reports."""

    connected: bool
    trade_allowed: bool = False
    tradeapi_disabled: bool = False
    build: int = 0
    ping_last: int = 0
    company: str = ""
    name: str = ""
    language: str = ""
    path: str = ""
    data_path: str = ""


@dataclass(frozen=True)
class AccountCredentials:
    """What the bridge needs to log a terminal into one account. The password never leaves the pool:
    it is excluded from repr so a stray log line or traceback cannot print it."""

    login: int
    password: str = field(repr=False)
    server: str
    name: str = ""
    currency: str = ""


class Rate(NamedTuple):
    """One bar of MetaTrader5.copy_rates_from_pos(); `time` is the bar's open in broker time, epoch s."""

    time: int
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    tick_volume: int = 0
    spread: int = 0
    real_volume: int = 0


class Terminal(ABC):
    """One MT5 terminal: logged into one account at a time, blocking calls, not thread-safe.

    `name` labels the terminal in health and summaries; `utc_offset_hours` is the broker's offset from
    UTC, which MT5 applies to every time it reports (the bridge converts back to UTC).
    """

    name: str = "mt5"
    utc_offset_hours: float = 0.0

    @abstractmethod
    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool: ...

    @abstractmethod
    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool: ...

    @abstractmethod
    def account_info(self) -> AccountInfo | None: ...

    @abstractmethod
    def positions_get(self) -> tuple[TradePosition, ...] | None: ...

    @abstractmethod
    def history_deals_get(self, date_from: datetime, date_to: datetime) -> tuple[TradeDeal, ...] | None:
        """Deals between two instants given, like MT5 expects, as broker-time epoch (aware UTC datetimes
        whose timestamp() is the broker's wall clock)."""

    @abstractmethod
    def terminal_info(self) -> TerminalInfo | None: ...

    @abstractmethod
    def last_error(self) -> tuple[int, str]: ...

    @abstractmethod
    def shutdown(self) -> None: ...

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> tuple[Rate, ...] | None:
        """Bars of `symbol` (MT5's TIMEFRAME_* code), oldest first, `start_pos` bars back from the one in
        progress; None when the terminal has none (last_error says why). Not every terminal serves bars:
        the default has none."""
        return None

    def now(self) -> datetime:
        """The instant on the clock this terminal's times are on (UTC): a read is stamped with it. The
        host's clock for a real terminal; a simulated desk's own (possibly shifted) clock."""
        return datetime.now(UTC)

    def release(self) -> None:
        """Unblock calls stuck in this terminal so their threads can end; called on pool close.
        A real terminal cannot be interrupted, so the default does nothing."""
        return None
