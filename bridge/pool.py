"""The terminal pool: serialised, time-bounded access to blocking MT5 terminals from asyncio.

Each terminal gets an asyncio.Lock (one account at a time) and its own daemon worker thread, so a call
that hangs ties up only that terminal: the request gets 504 after `call_timeout`, the terminal is marked
unhealthy, and later requests fail fast instead of queueing behind the stuck call. Daemon threads, not a
ThreadPoolExecutor, because the interpreter joins executor threads at exit and a truly hung MT5 call would
then keep the process alive forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bridge.errors import (
    AccountMismatch,
    BridgeError,
    LoginFailed,
    NoLiveData,
    TerminalTimeout,
    TerminalUnavailable,
    UnknownAccount,
)
from bridge.instrumented import InstrumentedTerminal
from bridge.metrics import BridgeMetrics
from bridge.terminal import (
    CONNECTION_ERROR_CODES,
    RES_S_OK,
    AccountCredentials,
    AccountInfo,
    Terminal,
    TerminalInfo,
    TradeDeal,
    TradePosition,
)

log = logging.getLogger("bridge.pool")
T = TypeVar("T")

TERMINAL_INFO_FIELDS = ("connected", "trade_allowed", "name", "company", "build", "path", "ping_last")


class _Worker:
    """A single daemon thread running one terminal's calls in order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        fut: Future[T] = Future()
        self._queue.put((fut, fn))
        return fut

    @property
    def started(self) -> bool:
        return self._thread is not None

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: float) -> bool:
        """True when the thread has ended (or never started)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, fn = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as e:  # handed to the awaiting request
                fut.set_exception(e)
            else:
                fut.set_result(result)


@dataclass(frozen=True)
class AccountRead:
    """account_info() as read and verified, with the UTC time of the read."""

    info: AccountInfo
    read_at: datetime


@dataclass
class TerminalHandle:
    """A terminal plus the bridge's bookkeeping about it. Health fields are read without the lock."""

    terminal: Terminal
    accounts: dict[int, AccountCredentials]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    healthy: bool = True
    last_error: str | None = None
    terminal_info: dict[str, Any] | None = None
    current_login: int | None = None
    initialized: bool = False
    stuck: Future[Any] | None = None  # a worker call that outlived its timeout
    metrics: BridgeMetrics | None = field(default=None, repr=False)
    worker: _Worker = field(init=False)
    calls: InstrumentedTerminal = field(init=False, repr=False)  # the terminal, timed: use for every call

    def __post_init__(self) -> None:
        self.worker = _Worker(f"mt5-{self.terminal.name}")
        self.calls = InstrumentedTerminal(self.terminal, self.metrics or BridgeMetrics(runtime=False))

    @property
    def name(self) -> str:
        return self.terminal.name

    @property
    def offset(self) -> timedelta:
        return timedelta(hours=self.terminal.utc_offset_hours)


def _fmt_error(term: Terminal) -> str:
    code, msg = term.last_error()
    return f"{msg} ({code})"


def _terminal_info_dict(ti: TerminalInfo) -> dict[str, Any]:
    return {k: getattr(ti, k) for k in TERMINAL_INFO_FIELDS}


class TerminalPool:
    """All terminals the bridge serves, and which accounts each one logs into.

    `members` is a sequence of (terminal, accounts); accounts on one terminal are served one at a time,
    different terminals in parallel. `metrics` (default: a fresh BridgeMetrics) receives every call's
    duration, lock wait and failure, and exports each terminal's health at scrape time.
    """

    def __init__(
        self,
        members: Iterable[tuple[Terminal, Sequence[AccountCredentials]]],
        *,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self._handles: list[TerminalHandle] = []
        self._by_login: dict[int, TerminalHandle] = {}
        self._known: dict[int, AccountRead] = {}
        self._closed = False
        names: set[str] = set()
        for terminal, creds in members:
            if terminal.name in names:
                raise ValueError(f"duplicate terminal name {terminal.name!r}")
            names.add(terminal.name)
            handle = TerminalHandle(terminal, {c.login: c for c in creds}, metrics=self.metrics)
            for c in creds:
                if c.login in self._by_login:
                    raise ValueError(f"account {c.login} is on more than one terminal")
                self._by_login[c.login] = handle
            self._handles.append(handle)
        if not self._by_login:
            raise ValueError("a terminal pool needs at least one account")
        self.metrics.watch(self.terminal_states)

    # -- lookups (no terminal access) ----------------------------------------------------------------

    @property
    def handles(self) -> list[TerminalHandle]:
        return list(self._handles)

    @property
    def accounts(self) -> list[int]:
        return list(self._by_login)

    def handle(self, login: int) -> TerminalHandle:
        try:
            return self._by_login[login]
        except KeyError:
            raise UnknownAccount(f"account {login} is not served by this bridge") from None

    def terminal_states(self) -> list[tuple[str, bool]]:
        """(terminal name, up) for each terminal, from cached state: what health and /metrics report."""
        return [(h.name, h.healthy and not self._closed) for h in self._handles]

    def credentials(self, login: int) -> AccountCredentials:
        return self.handle(login).accounts[login]

    def last_known(self, login: int) -> AccountRead | None:
        """The last account_info this bridge read and verified for the account (in memory)."""
        return self._known.get(login)

    def terminal(self, login: int) -> Terminal:
        return self.handle(login).terminal

    def set_fault(self, login: int, fault: str | None) -> None:
        """Switch a simulated fault on or off at runtime (SimulatedTerminal only)."""
        term = self.handle(login).terminal
        setter = getattr(term, "set_fault", None)
        if setter is None:
            raise TypeError(f"terminal {term.name} does not simulate faults")
        setter(login, fault)
        log.warning("fault on account %s set to %s", login, fault or "none")

    # -- terminal access -----------------------------------------------------------------------------

    async def read_account(self, login: int, call_timeout: float) -> AccountRead:
        """Live account_info for one account, verified to be that account."""
        read = await self._call(
            self.handle(login), login, lambda s: AccountRead(s.account(), s.read_at), call_timeout
        )
        self._known[login] = read
        return read

    async def read_positions(
        self, login: int, call_timeout: float
    ) -> tuple[AccountRead, tuple[TradePosition, ...]]:
        handle = self.handle(login)

        def op(s: _Session) -> tuple[AccountRead, tuple[TradePosition, ...]]:
            read = AccountRead(s.account(), s.read_at)
            positions = s.term.positions_get()
            if positions is None:
                raise TerminalUnavailable(f"positions_get failed for account {login}: {_fmt_error(s.term)}")
            return read, tuple(positions)

        read, positions = await self._call(handle, login, op, call_timeout)
        self._known[login] = read
        return read, positions

    async def read_deals(
        self, login: int, date_from: datetime, date_to: datetime, call_timeout: float
    ) -> tuple[TradeDeal, ...]:
        """Deals between two UTC instants. MT5 filters by broker time, so the window is shifted by the
        terminal's offset before the call."""
        handle = self.handle(login)
        broker_from, broker_to = date_from + handle.offset, date_to + handle.offset

        def op(s: _Session) -> tuple[TradeDeal, ...]:
            s.account()
            deals = s.term.history_deals_get(broker_from, broker_to)
            if deals is None:
                code, _ = s.term.last_error()
                if code == RES_S_OK:  # MT5 answers None with "Success" when there is nothing
                    return ()
                raise TerminalUnavailable(
                    f"history_deals_get failed for account {login}: {_fmt_error(s.term)}"
                )
            return tuple(deals)

        return await self._call(handle, login, op, call_timeout)

    async def read_many(
        self, logins: Sequence[int], call_timeout: float
    ) -> dict[int, AccountRead | BridgeError]:
        """Every account's live data: terminals in parallel, accounts on one terminal one after another.
        Failures are returned per account, never raised."""
        return await self._per_terminal(logins, lambda login: self.read_account(login, call_timeout))

    async def read_many_positions(
        self, logins: Sequence[int], call_timeout: float
    ) -> dict[int, tuple[AccountRead, tuple[TradePosition, ...]] | BridgeError]:
        """Every account's open positions, scheduled like read_many. Failures are returned per account."""
        return await self._per_terminal(logins, lambda login: self.read_positions(login, call_timeout))

    async def _per_terminal(
        self, logins: Sequence[int], read: Callable[[int], Awaitable[T]]
    ) -> dict[int, T | BridgeError]:
        """`read` for every login: terminals in parallel, accounts on one terminal one after another (a
        terminal is logged into one account at a time). In the order asked; failures per account."""
        results: dict[int, T | BridgeError] = {}
        groups: dict[int, list[int]] = {}
        for login in logins:
            try:
                h = self.handle(login)
            except UnknownAccount as e:
                results[login] = e
                continue
            groups.setdefault(id(h), []).append(login)

        async def serve(group: list[int]) -> None:
            for login in group:
                try:
                    results[login] = await read(login)
                except BridgeError as e:
                    results[login] = e

        await asyncio.gather(*(serve(g) for g in groups.values()))
        return {login: results[login] for login in logins}

    async def probe(self, call_timeout: float) -> None:
        """Initialise every terminal once at start-up so health has terminal_info before the first read.
        Does not log in: that is left to the first request for an account."""

        async def one(h: TerminalHandle) -> None:
            def op() -> dict[str, Any] | None:
                if not h.calls.initialize():
                    raise TerminalUnavailable(
                        f"terminal {h.name} failed to initialize: {_fmt_error(h.calls)}"
                    )
                ti = h.calls.terminal_info()
                return _terminal_info_dict(ti) if ti is not None else None

            try:
                info = await self._submit(h, op, call_timeout)
            except BridgeError as e:
                self._mark(h, e)
                return
            h.initialized = True
            if info is not None:
                h.terminal_info = info

        await asyncio.gather(*(one(h) for h in self._handles if not h.initialized))

    def close(self) -> None:
        """Release every terminal and let its thread end; never waits on a hung call."""
        if self._closed:
            return
        self._closed = True
        for h in self._handles:
            h.terminal.release()
            if h.worker.started:
                h.worker.submit(h.calls.shutdown)
                h.worker.stop()

    def join(self, timeout: float = 5.0) -> bool:
        """Wait (bounded) for worker threads to end after close(); True when all have."""
        return all(h.worker.join(timeout) for h in self._handles)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- internals -----------------------------------------------------------------------------------

    async def _call(
        self, handle: TerminalHandle, login: int, op: Callable[[_Session], T], call_timeout: float
    ) -> T:
        async with self._locked(handle):
            session = _Session(handle.calls, handle.accounts[login], handle.initialized, handle.current_login)
            try:
                result = await self._submit(handle, lambda: op(session), call_timeout, locked=True)
            except NoLiveData as e:  # logged in and connected: the terminal itself is fine
                handle.initialized, handle.current_login = True, login
                self._mark(handle, None)
                raise e from None
            except (LoginFailed, AccountMismatch) as e:
                if isinstance(e, AccountMismatch):  # account_info answered, for the wrong account
                    self.metrics.failure("account_info", "other")
                handle.initialized, handle.current_login = True, None
                self._mark(handle, None)
                raise e from None
            except BridgeError as e:
                handle.initialized, handle.current_login = False, None
                self._mark(handle, e)
                raise
            finally:
                if session.terminal_info is not None:
                    handle.terminal_info = _terminal_info_dict(session.terminal_info)
            handle.initialized, handle.current_login = True, login
            self._mark(handle, None)
            return result

    async def _submit(
        self, handle: TerminalHandle, fn: Callable[[], T], call_timeout: float, *, locked: bool = False
    ) -> T:
        if self._closed:
            raise TerminalUnavailable("the bridge is shutting down")
        if not locked:
            async with self._locked(handle):
                return await self._submit(handle, fn, call_timeout, locked=True)
        if handle.stuck is not None and not handle.stuck.done():
            raise TerminalTimeout(
                f"terminal {handle.name} is still blocked in an earlier call that timed out"
            )
        fut = handle.worker.submit(fn)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), call_timeout)
        except TimeoutError:
            handle.stuck = fut
            calls = handle.calls
            self.metrics.failure(calls.current or calls.last or "initialize", "timeout")
            raise TerminalTimeout(
                f"terminal {handle.name} did not answer within {call_timeout:g} s"
            ) from None
        except BridgeError:
            raise
        except Exception as e:
            log.exception("terminal %s: unexpected error in a terminal call", handle.name)
            raise TerminalUnavailable(f"terminal {handle.name} call failed: {type(e).__name__}") from None

    @contextlib.asynccontextmanager
    async def _locked(self, handle: TerminalHandle) -> AsyncIterator[None]:
        """The terminal's lock, with the wait for it observed."""
        start = time.perf_counter()
        async with handle.lock:
            self.metrics.lock_wait.observe(time.perf_counter() - start)
            yield

    def _mark(self, handle: TerminalHandle, error: BridgeError | None) -> None:
        """Record terminal health, logging only the transitions."""
        if error is None:
            if not handle.healthy:
                log.warning("terminal %s is healthy again", handle.name)
            handle.healthy, handle.last_error = True, None
            return
        if handle.healthy:
            log.warning("terminal %s is unhealthy: %s: %s", handle.name, error.code, error.message)
        handle.healthy = False
        handle.last_error = f"{error.code}: {error.message}"


class _Session:
    """Runs on the worker thread: initialise and log in as needed, then read and verify account_info.

    When the bridge believes the terminal is already on the account it skips the login (a real switch
    costs about a second), but if the terminal then answers for someone else, is disconnected or has no
    data, it logs in once more before giving up: the belief may be stale.
    """

    def __init__(
        self, term: Terminal, creds: AccountCredentials, initialized: bool, current: int | None
    ) -> None:
        self.term = term
        self.creds = creds
        self.initialized = initialized
        self.current = current
        self.terminal_info: TerminalInfo | None = None
        self.read_at = datetime.now(UTC)

    def account(self) -> AccountInfo:
        term, login = self.term, self.creds.login
        if not self.initialized:
            if not term.initialize():
                raise TerminalUnavailable(f"terminal {term.name} failed to initialize: {_fmt_error(term)}")
            self.initialized = True
        logged_in = self.current == login
        if not logged_in:
            self._login()
        tinfo, info, err = self._read()
        if logged_in and not (
            tinfo is not None and tinfo.connected and info is not None and info.login == login
        ):
            self._login()
            tinfo, info, err = self._read()
        if tinfo is None:
            raise TerminalUnavailable(
                f"terminal {term.name} did not answer terminal_info: {_fmt_error(term)}"
            )
        if not tinfo.connected:
            raise TerminalUnavailable(f"terminal {term.name} is not connected to the trade server")
        if info is None:
            raise NoLiveData(f"terminal {term.name} returned no account data for account {login}: {err}")
        if info.login != login:
            raise AccountMismatch(
                f"asked terminal {term.name} for account {login} but it answered for account {info.login}"
            )
        return info

    def _read(self) -> tuple[TerminalInfo | None, AccountInfo | None, str]:
        tinfo = self.term.terminal_info()
        if tinfo is not None:
            self.terminal_info = tinfo
        info = self.term.account_info()
        self.read_at = datetime.now(UTC)
        return tinfo, info, (_fmt_error(self.term) if info is None else "")

    def _login(self) -> None:
        c = self.creds
        if self.term.login(c.login, password=c.password, server=c.server):
            self.current = c.login
            return
        self.current = None
        code, msg = self.term.last_error()
        if code in CONNECTION_ERROR_CODES:
            raise TerminalUnavailable(
                f"terminal {self.term.name} could not reach the trade server to log in to account "
                f"{c.login}: {msg} ({code})"
            )
        raise LoginFailed(f"login to account {c.login} on {c.server} failed: {msg} ({code})")
