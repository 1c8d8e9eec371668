"""A simulated MT5 terminal: realistic, deterministic, and able to fail on purpose.

Everything is a function of (seed, clock): prices are fractal value noise over time (bridge.sim_market) and
each 5-minute slot's trade, with its whole life of SL/TP moves, scale-ins, partial closes, reversals and its
close, is laid out from a random.Random seeded by (seed, login, slot) (bridge.sim_trades). Any instant can
be read, in any order, and two terminals with the same seed and clock report the same data. The seed
balance is the balance at construction time; the deposit that opens the deal history is derived so the
history adds up to it. `ground_truth` lists every change made, for tests of event detection.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from bridge import sim_rates
from bridge.config import AccountEntry
from bridge.pool import TerminalPool
from bridge.sim_market import SYMBOLS, margin_of, pnl, price_at
from bridge.sim_trades import (
    MAX_TRADE_SECONDS,
    SLOT_MS,
    SimDeal,
    SimTrade,
    TruthChange,
    build_trade,
    ticket_for,
)
from bridge.terminal import (
    DEAL_TYPE_BALANCE,
    POSITION_TYPE_BUY,
    POSITION_TYPE_SELL,
    RES_E_AUTH_FAILED,
    RES_E_FAIL,
    RES_E_INTERNAL_FAIL,
    RES_E_INTERNAL_FAIL_CONNECT,
    RES_E_INVALID_PARAMS,
    RES_S_OK,
    AccountInfo,
    Rate,
    Terminal,
    TerminalInfo,
    TradeDeal,
    TradePosition,
)

__all__ = ["SLOT_MS", "SYMBOLS", "SimTrade", "SimulatedTerminal", "TruthChange", "price_at", "simulated_pool"]

FAULTS = ("login_failed", "disconnected", "hang", "wrong_account", "no_live_data", "bad_trades")

SERVER = "MEXAtlantic-Real"
# Brokers' (margin call %, stop-out %) as retail brokers set them; a server's pair is picked by a stable
# hash of its name (deterministic across runs, unlike hash()): MEXAtlantic-Real gets (100, 50).
BROKER_LEVELS: tuple[tuple[float, float], ...] = ((120.0, 60.0), (80.0, 40.0), (100.0, 30.0), (100.0, 50.0))


def broker_levels(server: str) -> tuple[float, float]:
    """The (margin_so_call, margin_so_so) percent levels the simulated broker applies on `server`."""
    return BROKER_LEVELS[zlib.crc32(server.encode()) % len(BROKER_LEVELS)]


DEMO_ACCOUNTS: tuple[tuple[int, str, float], ...] = (
    (886557, "Main Balance Account", 80_000.00),
    (886066, "Secondary Balance Account", 10_000.00),
    (886602, "Tertiary Balance Account", 9_960.68),
    (885822, "Core Account", 10_014.57),
    (886528, "Separation Account", 0.00),
    (891215, "Interest Earnings Trading", 27_047.52),
    (891234, "Account 891234", 8_000.00),
)

HISTORY_MS = 2 * 86_400_000  # deal history that exists when the terminal starts
MAX_PACE = 60  # a trade opportunity every 5 s per account at most (SimulatedTerminal's `pace`)


def demo_accounts() -> list[AccountEntry]:
    """The seed's seven accounts on MEXAtlantic-Real, in USD."""
    return [
        AccountEntry(
            login=login, password=SecretStr(f"demo-{login}"), name=name, server=SERVER, balance=balance
        )
        for login, name, balance in DEMO_ACCOUNTS
    ]


class _AccountSim:
    """One account's trading desk. Trades (bridge.sim_trades) are laid out slot by slot as the clock
    passes them and cached, with indexes (deals by time, balance as prefix sums, trades by open time) so a
    read costs a few bisections and the open positions, not a scan of the history: the bridge verifies
    the account (account_info) on every positions or deals read."""

    def __init__(self, entry: AccountEntry, seed: int, start_ms: int, offset_ms: int, pace: int = 1) -> None:
        self.entry = entry
        self.seed = seed
        self.offset_ms = offset_ms
        self.pace = pace
        self._levels = broker_levels(entry.server)
        self.slot_ms = SLOT_MS // pace
        self.trades: list[SimTrade] = []
        self.balance_ops: list[SimDeal] = []
        first_slot = (start_ms - HISTORY_MS // pace) // self.slot_ms  # as many trades as at pace 1
        self.origin_ms = first_slot * self.slot_ms
        self._next_slot = first_slot
        self.deposit: SimDeal | None = None
        self._dirty = True
        self._idle_info: tuple[tuple[str, str], AccountInfo] | None = None  # see account_info
        self.advance(start_ms)
        realised = sum(d.amount for d in self._visible_deals(start_ms))
        amount = round(entry.balance - realised, 2)
        if amount:
            fields = dict(
                ticket=ticket_for(self.origin_ms, entry.login, 98),
                type=DEAL_TYPE_BALANCE,
                profit=amount,
                comment="Deposit" if amount > 0 else "Withdrawal",
            )
            self.deposit = SimDeal(self.origin_ms, self.origin_ms, fields)
            self._dirty = True

    def advance(self, now_ms: int) -> None:
        if self.entry.balance <= 0:  # an empty account does not trade
            return
        last = now_ms // self.slot_ms
        while self._next_slot <= last:
            trade, op = build_trade(
                self.seed, self.entry.login, self._next_slot, self.entry.balance, self.offset_ms, self.pace
            )
            if trade is not None:
                self.trades.append(trade)  # slot order is open-time order
                self._dirty = True
            if op is not None:
                self.balance_ops.append(op)
                self._dirty = True
            self._next_slot += 1

    def _index(self) -> None:
        if not self._dirty:
            return
        deals = [d for t in self.trades for d in t.deals] + self.balance_ops
        if self.deposit is not None:
            deals.append(self.deposit)
        deals.sort(key=lambda d: (d.utc_ms, d.fields["ticket"]))
        self._deals = deals
        self._deal_ms = [d.utc_ms for d in deals]
        by_visible = sorted(deals, key=lambda d: (d.visible_ms, d.utc_ms, d.fields["ticket"]))
        self._visible_ms = [d.visible_ms for d in by_visible]
        self._balance = list(itertools.accumulate((d.amount for d in by_visible), initial=0.0))
        self._open_ms = [t.open_ms for t in self.trades]
        self._dirty = False

    def balance(self, now_ms: int) -> float:
        self._index()
        return round(self._balance[bisect.bisect_right(self._visible_ms, now_ms)], 2)

    def _visible_deals(
        self, now_ms: int, lo_ms: int | None = None, hi_ms: int | None = None
    ) -> list[SimDeal]:
        """Deals in the history at now_ms done within [lo_ms, hi_ms] (UTC), in time order."""
        self._index()
        i = 0 if lo_ms is None else bisect.bisect_left(self._deal_ms, lo_ms)
        j = len(self._deals) if hi_ms is None else bisect.bisect_right(self._deal_ms, hi_ms)
        return [d for d in self._deals[i:j] if d.visible_ms <= now_ms]

    def deals(self, now_ms: int, lo_ms: int | None = None, hi_ms: int | None = None) -> list[TradeDeal]:
        off = self.offset_ms
        return [
            TradeDeal(**d.fields, time=(d.utc_ms + off) // 1000, time_msc=d.utc_ms + off)
            for d in self._visible_deals(now_ms, lo_ms, hi_ms)
        ]

    def _open_trades(self, now_ms: int) -> list[SimTrade]:
        """Candidates only: a trade lives at most MAX_TRADE_SECONDS."""
        self._index()
        i = bisect.bisect_left(self._open_ms, now_ms - int(MAX_TRADE_SECONDS * 1000))
        j = bisect.bisect_right(self._open_ms, now_ms)
        return self.trades[i:j]

    def positions(self, now_ms: int) -> list[TradePosition]:
        if not self.trades:  # an account that never traded (every account_info asks)
            return []
        off = self.offset_ms
        out = []
        for t in self._open_trades(now_ms):
            s = t.state_at(now_ms)
            if s is None:
                continue
            price = price_at(self.seed, t.symbol, now_ms / 1000)
            out.append(
                TradePosition(
                    ticket=s.ticket,
                    time=(s.open_ms + off) // 1000,
                    time_msc=s.open_ms + off,
                    time_update=(s.update_ms + off) // 1000,
                    time_update_msc=s.update_ms + off,
                    type=POSITION_TYPE_BUY if s.buy else POSITION_TYPE_SELL,
                    magic=s.magic,
                    identifier=s.identifier,
                    reason=s.reason,
                    volume=s.volume,
                    price_open=s.price_open,
                    sl=s.sl,
                    tp=s.tp,
                    price_current=price,
                    swap=t.swap_at(now_ms),
                    profit=round(pnl(t.sym, s.buy, s.volume, s.price_open, price), 2),
                    symbol=t.sym.name,
                    comment=s.comment,
                )
            )
        return out

    def ground_truth(self, since_ms: int, until_ms: int) -> list[TruthChange]:
        """Every change in [since_ms, until_ms), in time order."""
        out = [c for t in self.trades for c in t.changes if since_ms <= c.time_ms < until_ms]
        ops = list(self.balance_ops) + ([self.deposit] if self.deposit is not None else [])
        for d in ops:
            if since_ms <= d.utc_ms < until_ms:
                data = dict(amount=d.fields["profit"], deal=d.fields["ticket"], comment=d.fields["comment"])
                out.append(TruthChange(d.utc_ms, self.entry.login, 0, "balance", data))
        out.sort(key=lambda c: (c.time_ms, c.identifier, _KIND_ORDER[c.kind]))
        return out

    def account_info(self, now_ms: int, company: str) -> AccountInfo:
        """Balance is the visible history's sum (a late closing deal moves it when it shows); profit is
        the floating profit plus swap of the open positions; equity = balance + profit.

        Everything else is the entry's, so with no open position the answer only changes with the
        balance: the last one is kept and handed out again while the balance stays (a batch reads every
        account each cycle, and most of the time an account's balance has not moved)."""
        e = self.entry
        balance = self.balance(now_ms)
        positions = self.positions(now_ms)
        if not positions:
            key = (balance.hex(), company)
            if self._idle_info is not None and self._idle_info[0] == key:
                return self._idle_info[1]
        profit = round(sum(p.profit + p.swap for p in positions), 2)
        margin = 0.0
        for p in positions:
            sym = _SYMBOL_BY_NAME[p.symbol]
            margin += margin_of(sym, p.volume, p.price_open, e.leverage)
        margin = round(margin, 2)
        equity = round(balance + profit, 2)
        info = AccountInfo(
            login=e.login,
            trade_mode=2,  # ACCOUNT_TRADE_MODE_REAL
            leverage=e.leverage,
            limit_orders=200,
            trade_allowed=True,
            trade_expert=True,
            margin_mode=2,  # ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
            currency_digits=2,
            balance=balance,
            profit=profit,
            equity=equity,
            margin=margin,
            margin_free=round(equity - margin, 2),
            margin_level=round(equity / margin * 100.0, 2) if margin else 0.0,
            margin_so_mode=0,  # ACCOUNT_STOPOUT_MODE_PERCENT
            margin_so_call=self._levels[0],
            margin_so_so=self._levels[1],
            name=e.name or f"Account {e.login}",
            server=e.server,
            currency=e.currency,
            company=company,
        )
        if not positions:
            self._idle_info = (key, info)
        return info


_SYMBOL_BY_NAME = {s.name: s for s in SYMBOLS}
_KIND_ORDER = {
    "balance": 0,
    "opened": 1,
    "sl_tp": 2,
    "volume_added": 3,
    "partial_close": 4,
    "reversal": 5,
    "closed": 6,
}


def _epoch_seconds(value: datetime | float) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


class SimulatedTerminal(Terminal):
    """A terminal that behaves like MT5 for the bridge: one logged-in account at a time, blocking calls,
    a login cost, broker-time timestamps, and faults that can be switched per account at any time.

    `clock` returns UTC epoch seconds (injectable for tests); `static=True` freezes it at construction.
    Faults take effect when the terminal works on that account: `hang` blocks the call until the fault is
    cleared, `release()` is called, or `hang_seconds` pass, so a stuck worker thread can always end.
    """

    def __init__(
        self,
        accounts: Sequence[AccountEntry],
        *,
        name: str = "sim-1",
        seed: int = 42,
        login_cost: float = 0.0,
        latency: float = 0.0,
        faults: Mapping[int, str] | None = None,
        static: bool = False,
        utc_offset_hours: float = 0.0,
        clock: Callable[[], float] | None = None,
        hang_seconds: float = 3600.0,
        company: str = "MEX Atlantic",
        build: int = 3770,
        pace: int = 1,
    ) -> None:
        if not accounts:
            raise ValueError("a simulated terminal needs at least one account")
        if not (isinstance(pace, int) and 1 <= pace <= MAX_PACE):
            raise ValueError(f"pace must be an integer from 1 to {MAX_PACE}, got {pace!r}")
        self.pace = pace
        self.name = name
        self.seed = seed
        self.login_cost = login_cost
        self.latency = latency
        self.utc_offset_hours = utc_offset_hours
        self.hang_seconds = hang_seconds
        self.company = company
        self.build = build
        self._entries = {a.login: a for a in accounts}
        self._logins = [a.login for a in accounts]
        base_clock = clock or time.time
        self._start_ms = int(base_clock() * 1000)
        self._clock = (lambda: self._start_ms / 1000) if static else base_clock
        self._sims: dict[int, _AccountSim] = {}
        self._sim_lock = threading.Lock()
        self._cond = threading.Condition()
        self._faults: dict[int, str] = {}
        self._closed = False
        self._initialized = False
        self._current: int | None = None
        self._last_error: tuple[int, str] = (RES_S_OK, "Success")
        self._terminal_infos: dict[tuple[bool, int, str, str], TerminalInfo] = {}
        self.login_calls = 0
        self.hung_calls = 0  # calls blocked right now by a `hang` fault
        for login, fault in (faults or {}).items():
            self.set_fault(login, fault)
        for login in self._logins:  # lay out the history now (~50 ms a trading account), not in a first call
            self._sim(login, self._start_ms)

    # -- knobs ---------------------------------------------------------------------------------------

    @property
    def logins(self) -> list[int]:
        return list(self._logins)

    def set_fault(self, login: int, fault: str | None) -> None:
        """Switch a fault on (or off with None) for one account; wakes calls hung on that account."""
        if login not in self._entries:
            raise ValueError(f"account {login} is not on simulated terminal {self.name}")
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {', '.join(FAULTS)}")
        with self._cond:
            if fault is None:
                self._faults.pop(login, None)
            else:
                self._faults[login] = fault
                if fault == "login_failed" and self._current == login:
                    self._current = None  # the server dropped the session
            self._cond.notify_all()

    def fault(self, login: int) -> str | None:
        with self._cond:
            return self._faults.get(login)

    def release(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms() / 1000, UTC)

    def simulated_trades(self, login: int) -> list[SimTrade]:
        """Ground truth (UTC) for tests: the trades opened so far on an account, whole lives included
        (a trade's `close_ms` may lie in the future)."""
        now = self.now_ms()
        return [t for t in self._sim(login, now).trades if t.open_ms <= now]

    def ground_truth(self, login: int, since_ms: int, until_ms: int | None = None) -> list[TruthChange]:
        """Every change the simulator made to an account in [since_ms, until_ms) (UTC ms; default: up to
        now), in time order: opened, sl_tp, volume_added, partial_close, reversal, closed, balance.
        Independent of the clock's history: any window can be asked for, in any order."""
        until = self.now_ms() + 1 if until_ms is None else until_ms
        return self._sim(login, until).ground_truth(since_ms, until)

    # -- internals -----------------------------------------------------------------------------------

    def _sim(self, login: int, now_ms: int) -> _AccountSim:
        with self._sim_lock:  # the worker thread and a test's direct reads may both get here
            sim = self._sims.get(login)
            if sim is None:
                sim = self._sims[login] = _AccountSim(
                    self._entries[login], self.seed, self._start_ms, self._offset_ms(), self.pace
                )
            sim.advance(now_ms)
            return sim

    def _wait(self, seconds: float) -> None:
        """Block like a real call, but give up early on release()."""
        if seconds > 0:
            with self._cond:
                self._cond.wait_for(lambda: self._closed, timeout=seconds)

    def _begin(self, login: int | None) -> bool:
        """Common prologue: latency, then a hang if the account has one. False once released."""
        if self.latency > 0:
            self._wait(self.latency)
        elif not self._closed and (login is None or self._faults.get(login) != "hang"):
            return True  # the common case, decided without the condition's lock (dict reads are atomic)
        with self._cond:
            if login is not None and self._faults.get(login) == "hang" and not self._closed:
                self.hung_calls += 1
                try:
                    self._cond.wait_for(
                        lambda: self._closed or self._faults.get(login) != "hang", timeout=self.hang_seconds
                    )
                finally:
                    self.hung_calls -= 1
            if self._closed:
                self._last_error = (RES_E_INTERNAL_FAIL, "Terminal: shut down")
                return False
            return True

    def _ready(self) -> int | None:
        """The logged-in account, or None (with last_error set) when there is no session."""
        if not self._initialized:
            self._last_error = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return None
        if self._current is None:
            self._last_error = (RES_E_FAIL, "Terminal: not logged in")
        return self._current

    def _other_login(self, login: int) -> int:
        others = [x for x in self._logins if x != login]
        return others[0] if others else login + 1

    def _snapshot(self, login: int, now_ms: int) -> AccountInfo:
        if login in self._entries:
            return self._sim(login, now_ms).account_info(now_ms, self.company)
        # a phantom neighbour for wrong_account on a one-account terminal
        info = self._sim(self._logins[0], now_ms).account_info(now_ms, self.company)
        return info._replace(login=login, name=f"Account {login}")

    # -- the MetaTrader5 API -------------------------------------------------------------------------

    def initialize(
        self,
        path: str | None = None,
        *,
        login: int | None = None,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        if not self._begin(None):
            return False
        self._initialized = True
        self._last_error = (RES_S_OK, "Success")
        if login is not None:
            return self.login(login, password=password, server=server, timeout=timeout)
        return True

    def login(
        self,
        login: int,
        *,
        password: str | None = None,
        server: str | None = None,
        timeout: int | None = None,
    ) -> bool:
        self.login_calls += 1
        if not self._begin(login):
            return False
        if self.login_cost > 0:
            self._wait(self.login_cost)
        if self._closed or not self._initialized:
            self._last_error = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return False
        entry = self._entries.get(login)
        fault = self._faults.get(login)
        self._current = None
        if fault == "disconnected":
            self._last_error = (RES_E_INTERNAL_FAIL_CONNECT, "No connection to trade server")
            return False
        good = entry is not None and password == entry.password.get_secret_value()
        if not good or fault == "login_failed" or (server and entry is not None and server != entry.server):
            self._last_error = (RES_E_AUTH_FAILED, "Terminal: Authorization failed")
            return False
        self._current = login
        self._last_error = (RES_S_OK, "Success")
        return True

    def _data_call_login(self) -> int | None:
        """The login a data call reads once the account's fault is applied; None (with last_error
        set, as MT5 does) when the call fails."""
        if not self._begin(self._current):
            return None
        login = self._ready()
        if login is None:
            return None
        fault = self._faults.get(login)
        if fault == "no_live_data":
            self._last_error = (RES_E_FAIL, "Terminal: Call failed")
            return None
        if fault == "wrong_account":
            return self._other_login(login)
        return login

    def account_info(self) -> AccountInfo | None:
        login = self._data_call_login()
        if login is None:
            return None
        self._last_error = (RES_S_OK, "Success")
        return self._snapshot(login, self.now_ms())

    def copy_rates_from_pos(
        self, symbol: str, timeframe: int, start_pos: int, count: int
    ) -> tuple[Rate, ...] | None:
        """Correlated bars of bridge.sim_rates (the same for every account: a market, not a desk)."""
        if self._data_call_login() is None:
            return None
        bars = sim_rates.rates(
            self.seed, symbol, timeframe, start_pos, count, self.now_ms() / 1000, self._offset_ms() / 1000
        )
        ok = (RES_S_OK, "Success")
        self._last_error = ok if bars else (RES_E_INVALID_PARAMS, "Terminal: Invalid params")
        return bars

    def positions_get(self) -> tuple[TradePosition, ...] | None:
        login = self._data_call_login()
        if login is None:
            return None
        if login not in self._entries:
            return ()
        now = self.now_ms()
        self._last_error = (RES_S_OK, "Success")
        positions = tuple(self._sim(login, now).positions(now))
        if self.fault(login) == "bad_trades":
            return _bad_positions(positions, now + self._offset_ms())
        return positions

    def history_deals_get(self, date_from: datetime, date_to: datetime) -> tuple[TradeDeal, ...] | None:
        login = self._data_call_login()
        if login is None:
            return None
        if login not in self._entries:
            return ()
        lo, hi = _epoch_seconds(date_from), _epoch_seconds(date_to)
        now = self.now_ms()
        off = self._offset_ms()  # a UTC window a second wider than the broker-time one, then the exact test
        lo_ms = max(int(lo * 1000) - off - 1000, 0)
        hi_ms = int(min(hi, 2**40) * 1000) - off + 1000
        deals = self._sim(login, now).deals(now, lo_ms, hi_ms)
        self._last_error = (RES_S_OK, "Success")
        out = tuple(d for d in deals if lo <= d.time <= hi)
        if self.fault(login) == "bad_trades":
            return _bad_deals(out, now + off)
        return out

    def terminal_info(self) -> TerminalInfo | None:
        if not self._begin(self._current):
            return None
        if not self._initialized:
            self._last_error = (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
            return None
        current = self._current
        connected = current is None or self._faults.get(current) != "disconnected"
        self._last_error = (RES_S_OK, "Success")
        key = (connected, self.build, self.company, self.name)
        info = self._terminal_infos.get(key)  # immutable, and the same for every account of the terminal
        if info is None:
            info = self._terminal_infos[key] = TerminalInfo(
                connected=connected,
                trade_allowed=True,
                build=self.build,
                ping_last=35_000 if connected else 0,
                company=self.company,
                name=f"{self.company} MT5 Terminal (simulated)",
                language="English",
                path=f"simulated://{self.name}",
                data_path=f"simulated://{self.name}/data",
            )
        return info

    def last_error(self) -> tuple[int, str]:
        return self._last_error

    def shutdown(self) -> None:
        self._initialized = False
        self._current = None

    def _offset_ms(self) -> int:
        return round(self.utc_offset_hours * 3_600_000)


def _bad_positions(positions: tuple[TradePosition, ...], broker_ms: int) -> tuple[TradePosition, ...]:
    """The `bad_trades` fault: what a broken terminal or bridge might send. The account itself reads fine;
    a consumer must fail this account's positions poll with a reason, and lose nothing."""
    bad = TradePosition(
        ticket=1, time=broker_ms // 1000, time_msc=broker_ms, type=7, identifier=0, volume=math.nan,
        price_open=-1.0, symbol="",
    )  # fmt: skip
    return (*positions, bad)


def _bad_deals(deals: tuple[TradeDeal, ...], broker_ms: int) -> tuple[TradeDeal, ...]:
    bad = TradeDeal(
        ticket=1, time=broker_ms // 1000, time_msc=broker_ms, type=0, entry=9, position_id=0, volume=-1.0,
        profit=math.inf, symbol="EURUSD",
    )  # fmt: skip
    return (*deals, bad)


def _coerce_entries(accounts: Iterable[Any] | None) -> list[AccountEntry]:
    """Accept AccountEntry objects, dicts in the accounts-file format, or bare logins (demo accounts
    keep their seed name and balance; others get a default one)."""
    if accounts is None:
        return demo_accounts()
    demo = {a.login: a for a in demo_accounts()}
    out: list[AccountEntry] = []
    for a in accounts:
        if isinstance(a, AccountEntry):
            out.append(a)
        elif isinstance(a, Mapping):
            out.append(AccountEntry.model_validate(a))
        elif isinstance(a, int) and not isinstance(a, bool):
            out.append(demo.get(a) or AccountEntry(login=a, password=SecretStr(f"demo-{a}"), server=SERVER))
        else:
            raise TypeError(f"unsupported account spec {type(a).__name__}")
    if len({a.login for a in out}) != len(out):
        raise ValueError("duplicate account login")
    return out


def simulated_pool(
    accounts: list | None = None,
    *,
    terminals: int | None = None,
    login_cost: float = 0.0,
    latency: float = 0.0,
    faults: dict[int, str] | None = None,
    static: bool = False,
    seed: int = 42,
    utc_offset_hours: float = 0.0,
    clock: Callable[[], float] | None = None,
    hang_seconds: float = 3600.0,
    pace: int = 1,
) -> TerminalPool:
    """A TerminalPool of SimulatedTerminals. terminals=None: one terminal per account, or grouped by
    each entry's `terminal` name when given; N: accounts spread round-robin over N terminals."""
    entries = _coerce_entries(accounts)
    if terminals is not None and terminals < 1:
        raise ValueError("terminals must be >= 1")
    faults = dict(faults or {})
    unknown = set(faults) - {e.login for e in entries}
    if unknown:
        raise ValueError(f"fault for unknown account(s): {', '.join(map(str, sorted(unknown)))}")
    groups: dict[str, list[AccountEntry]] = {}
    for i, e in enumerate(entries):
        if terminals is not None:
            key = f"sim-{i % terminals + 1}"
        elif e.terminal:
            key = e.terminal
        else:
            key = f"sim-{e.login}"
        groups.setdefault(key, []).append(e)
    members = []
    for name, group in groups.items():
        term = SimulatedTerminal(
            group,
            name=name,
            seed=seed,
            login_cost=login_cost,
            latency=latency,
            faults={e.login: faults[e.login] for e in group if e.login in faults},
            static=static,
            utc_offset_hours=utc_offset_hours,
            clock=clock,
            hang_seconds=hang_seconds,
            pace=pace,
        )
        members.append((term, [e.credentials() for e in group]))
    return TerminalPool(members)
