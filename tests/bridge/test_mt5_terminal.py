"""MetaTrader5Terminal's mapping, checked against a stand-in module.

No MT5 terminal (and no MetaTrader5 package) can run here, so a tiny fake `MetaTrader5` module with MT5's
named-tuple shapes is injected into sys.modules. It proves the adapter's field mapping and argument
passing, not the real package's behaviour.
"""

from __future__ import annotations

import sys
import types
from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.mt5_terminal import MetaTrader5NotInstalled, MetaTrader5Terminal
from bridge.pool import TerminalPool
from bridge.terminal import AccountCredentials, AccountInfo, TradeDeal, TradePosition

# The real package's tuples have every field below (and TerminalInfo many more than we keep).
MT5AccountInfo = namedtuple("AccountInfo", AccountInfo._fields)
MT5Position = namedtuple("TradePosition", TradePosition._fields)
MT5Deal = namedtuple("TradeDeal", TradeDeal._fields)
MT5TerminalInfo = namedtuple(
    "TerminalInfo",
    "community_account community_connection connected dlls_allowed trade_allowed tradeapi_disabled "
    "email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage ping_last "
    "community_balance retransmission company name language path data_path commondata_path",
)

LOGIN = 891215

# The enum constants the fake module carries, written out like the real package's __init__.py (checked
# against the real wheel by test_mt5_constants.py).
FAKE_CONSTANTS = {
    "POSITION_TYPE_BUY": 0,
    "POSITION_TYPE_SELL": 1,
    "POSITION_REASON_CLIENT": 0,
    "POSITION_REASON_MOBILE": 1,
    "POSITION_REASON_WEB": 2,
    "POSITION_REASON_EXPERT": 3,
    "DEAL_TYPE_BUY": 0,
    "DEAL_TYPE_SELL": 1,
    "DEAL_TYPE_BALANCE": 2,
    "DEAL_TYPE_CREDIT": 3,
    "DEAL_TYPE_CHARGE": 4,
    "DEAL_TYPE_CORRECTION": 5,
    "DEAL_TYPE_BONUS": 6,
    "DEAL_TYPE_COMMISSION": 7,
    "DEAL_TYPE_COMMISSION_DAILY": 8,
    "DEAL_TYPE_COMMISSION_MONTHLY": 9,
    "DEAL_TYPE_COMMISSION_AGENT_DAILY": 10,
    "DEAL_TYPE_COMMISSION_AGENT_MONTHLY": 11,
    "DEAL_TYPE_INTEREST": 12,
    "DEAL_TYPE_BUY_CANCELED": 13,
    "DEAL_TYPE_SELL_CANCELED": 14,
    "DEAL_DIVIDEND": 15,
    "DEAL_DIVIDEND_FRANKED": 16,
    "DEAL_TAX": 17,
    "DEAL_ENTRY_IN": 0,
    "DEAL_ENTRY_OUT": 1,
    "DEAL_ENTRY_INOUT": 2,
    "DEAL_ENTRY_OUT_BY": 3,
    "DEAL_REASON_CLIENT": 0,
    "DEAL_REASON_MOBILE": 1,
    "DEAL_REASON_WEB": 2,
    "DEAL_REASON_EXPERT": 3,
    "DEAL_REASON_SL": 4,
    "DEAL_REASON_TP": 5,
    "DEAL_REASON_SO": 6,
    "DEAL_REASON_ROLLOVER": 7,
    "DEAL_REASON_VMARGIN": 8,
    "DEAL_REASON_SPLIT": 9,
}


def fake_mt5() -> types.ModuleType:
    mod = types.ModuleType("MetaTrader5")
    state: dict[str, Any] = {"calls": [], "login": None}
    mod.state = state  # type: ignore[attr-defined]
    for name, value in FAKE_CONSTANTS.items():
        setattr(mod, name, value)

    def initialize(*args: Any, **kw: Any) -> bool:
        state["calls"].append(("initialize", args, kw))
        return True

    def login(login: int, **kw: Any) -> bool:
        state["calls"].append(("login", (login,), kw))
        state["login"] = login
        return kw.get("password") == "pw"

    def account_info() -> Any:
        values = {f: 0 for f in AccountInfo._fields}
        values.update(
            login=state["login"],
            name="Interest Earnings Trading",
            server="MEXAtlantic-Real",
            currency="USD",
            company="MEX Atlantic",
            balance=27047.52,
            equity=27047.52,
            margin_free=27047.52,
            leverage=100,
            trade_allowed=True,
        )
        return MT5AccountInfo(**values)

    def terminal_info() -> Any:
        values = {f: 0 for f in MT5TerminalInfo._fields}
        values.update(
            connected=True,
            trade_allowed=True,
            name="MetaTrader 5",
            company="MEX Atlantic",
            build=3770,
            path="C:\\MT5",
            data_path="C:\\data",
            language="English",
        )
        return MT5TerminalInfo(**values)

    def positions_get() -> Any:
        p = {f: 0 for f in TradePosition._fields}
        p.update(ticket=11, symbol="EURUSD", comment="", external_id="", volume=0.1, profit=1.5)
        return (MT5Position(**p),)

    def history_deals_get(date_from: datetime, date_to: datetime) -> Any:
        state["calls"].append(("history_deals_get", (date_from, date_to), {}))
        d = {f: 0 for f in TradeDeal._fields}
        d.update(
            ticket=21,
            time=1_761_328_399,
            time_msc=1_761_328_399_571,
            symbol="EURUSD",
            comment="x",
            external_id="",
            profit=2.5,
        )
        return (MT5Deal(**d),)

    mod.initialize = initialize  # type: ignore[attr-defined]
    mod.login = login  # type: ignore[attr-defined]
    mod.account_info = account_info  # type: ignore[attr-defined]
    mod.terminal_info = terminal_info  # type: ignore[attr-defined]
    mod.positions_get = positions_get  # type: ignore[attr-defined]
    mod.history_deals_get = history_deals_get  # type: ignore[attr-defined]
    mod.last_error = lambda: (-6, "Terminal: Authorization failed")  # type: ignore[attr-defined]
    mod.shutdown = lambda: state["calls"].append(("shutdown", (), {}))  # type: ignore[attr-defined]
    return mod


def test_missing_package_fails_with_one_clear_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)  # makes `import MetaTrader5` raise ImportError
    with pytest.raises(MetaTrader5NotInstalled) as exc:
        MetaTrader5Terminal()
    message = str(exc.value)
    assert message == "the MetaTrader5 package is not installed (it exists only on Windows); use --simulate"


def test_adapter_maps_mt5_tuples_and_arguments(monkeypatch) -> None:
    mod = fake_mt5()
    monkeypatch.setitem(sys.modules, "MetaTrader5", mod)
    term = MetaTrader5Terminal(path="C:\\MT5\\terminal64.exe", name="vps", utc_offset_hours=2)
    assert term.initialize()
    assert mod.state["calls"][0] == ("initialize", ("C:\\MT5\\terminal64.exe",), {})
    assert term.login(LOGIN, password="pw", server="MEXAtlantic-Real")
    assert mod.state["calls"][1] == ("login", (LOGIN,), {"password": "pw", "server": "MEXAtlantic-Real"})

    info = term.account_info()
    assert isinstance(info, AccountInfo)
    assert (info.login, info.balance, info.name, info.currency) == (
        LOGIN,
        27047.52,
        "Interest Earnings Trading",
        "USD",
    )
    tinfo = term.terminal_info()
    assert tinfo is not None and tinfo.connected and tinfo.build == 3770 and tinfo.path == "C:\\MT5"
    (pos,) = term.positions_get() or ()
    assert isinstance(pos, TradePosition) and pos.ticket == 11 and pos.profit == 1.5
    start, end = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 2, tzinfo=UTC)
    (deal,) = term.history_deals_get(start, end) or ()
    assert isinstance(deal, TradeDeal) and deal.ticket == 21 and deal.time_msc == 1_761_328_399_571
    assert mod.state["calls"][-1] == ("history_deals_get", (start, end), {})
    assert term.last_error() == (-6, "Terminal: Authorization failed")
    term.shutdown()
    assert mod.state["calls"][-1][0] == "shutdown"


async def test_bridge_over_the_adapter(monkeypatch, make_bridge) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", fake_mt5())
    term = MetaTrader5Terminal(name="vps", utc_offset_hours=2)
    pool = TerminalPool([(term, [AccountCredentials(LOGIN, "pw", "MEXAtlantic-Real", "Interest")])])
    br = await make_bridge(pool)
    status, body = await br.get(f"/api/mt5/account/{LOGIN}/info")
    assert status == 200 and body["live_data"]["login"] == LOGIN and body["live_data"]["balance"] == 27047.52
    status, body = await br.get(f"/api/mt5/account/{LOGIN}/trades?from=2025-10-24T00:00:00&to=2025-10-25")
    assert status == 200
    assert body["deals"][0]["time"] == "2025-10-24T15:53:19.571Z"  # 17:53:19.571 broker time at +2 h
    _, health = await br.get("/api/mt5/bridge/health")
    assert health["mt5"]["terminal_info"]["name"] == "MetaTrader 5"


async def test_bridge_reports_login_failure_from_the_adapter(monkeypatch, make_bridge) -> None:
    monkeypatch.setitem(sys.modules, "MetaTrader5", fake_mt5())
    term = MetaTrader5Terminal(name="vps")
    pool = TerminalPool([(term, [AccountCredentials(LOGIN, "not-pw", "MEXAtlantic-Real")])])
    br = await make_bridge(pool)
    status, body = await br.get(f"/api/mt5/account/{LOGIN}/balance")
    assert status == 503 and body["error"]["code"] == "login_failed"
