"""The terminal pool: serialised, time-bounded access to blocking MT5 terminals from asyncio.

Each terminal gets an asyncio.Lock (one account at a time) and its own daemon worker thread, so a call
that hangs ties up only that terminal: the request gets 504 after `call_timeout`, the terminal is marked
unhealthy, and later requests fail fast instead of queueing behind the stuck call. Daemon threads, not a
ThreadPoolExecutor, because the interpreter joins executor threads at exit and a truly hung MT5 call would
then keep the process alive forever.

Batch reads (read_many, read_many_positions) run one job per terminal on that thread, reading its
accounts one after another, instead of one lock, thread hop and timer per account (about 150 µs of
event-loop CPU each at 10,000 accounts); each account still ends exactly as its single read would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from bridge.errors import (
    AccountMismatch,
    BridgeError,
    LoginFailed,
    NoLiveData,
    TerminalTimeout,
    TerminalUnavailable,
    UnknownAccount,
    UnknownSymbol,
)
from bridge.instrumented import InstrumentedTerminal
from bridge.metrics import BridgeMetrics
from bridge.terminal import (
    CONNECTION_ERROR_CODES,
    RES_S_OK,
    AccountCredentials,
    AccountInfo,
    Rate,
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
    batch: _BatchJob[Any] | None = field(default=None, repr=False)  # the batch job holding the lock, if any
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


def _still_blocked(handle: TerminalHandle) -> TerminalTimeout:
    return TerminalTimeout(f"terminal {handle.name} is still blocked in an earlier call that timed out")


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
        read = await self._call(self.handle(login), login, _read_account, call_timeout)
        self._known[login] = read
        return read

    async def read_positions(
        self, login: int, call_timeout: float
    ) -> tuple[AccountRead, tuple[TradePosition, ...]]:
        read, positions = await self._call(self.handle(login), login, _read_positions, call_timeout)
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
        return await self._per_terminal(logins, _read_account, lambda read: read, call_timeout)

    async def read_many_positions(
        self, logins: Sequence[int], call_timeout: float
    ) -> dict[int, tuple[AccountRead, tuple[TradePosition, ...]] | BridgeError]:
        """Every account's open positions, scheduled like read_many. Failures are returned per account."""
        return await self._per_terminal(logins, _read_positions, lambda result: result[0], call_timeout)

    async def _per_terminal(
        self,
        logins: Sequence[int],
        op: Callable[[_Session], T],
        known: Callable[[T], AccountRead],
        call_timeout: float,
    ) -> dict[int, T | BridgeError]:
        """`op` for every login: terminals in parallel, accounts on one terminal one after another (a
        terminal is logged into one account at a time), each terminal's accounts in one worker job (see
        _serve_batch). In the order asked; failures per account."""
        results: dict[int, T | BridgeError] = {}
        groups: dict[int, tuple[TerminalHandle, list[int]]] = {}
        for login in logins:
            try:
                h = self.handle(login)
            except UnknownAccount as e:
                results[login] = e
                continue
            groups.setdefault(id(h), (h, []))[1].append(login)
        await asyncio.gather(
            *(self._serve_batch(h, group, op, known, call_timeout, results) for h, group in groups.values())
        )
        return {login: results[login] for login in logins}

    async def _serve_batch(
        self,
        handle: TerminalHandle,
        logins: list[int],
        op: Callable[[_Session], T],
        known: Callable[[T], AccountRead],
        call_timeout: float,
        results: dict[int, T | BridgeError],
    ) -> None:
        """One terminal's share of a batch: a single worker job reads the accounts one after another, so
        the event loop pays one lock, one thread hop and one timer per terminal instead of per account.

        Every account gets exactly what _call would give it (result or error, handle bookkeeping,
        `_known`), replayed on the loop in order once the job ends. `call_timeout` bounds each account,
        not the batch: the loop waits with a deadline that moves on whenever an account completes, so
        a hung account fails with TerminalTimeout after call_timeout, the handle is marked stuck with
        the job, and the accounts after it fail as still blocked. A single read waiting for the lock
        makes the job stop after its current account and continue later, so it never waits for a whole
        terminal's batch."""
        todo = logins
        while todo:
            async with self._locked(handle, preempt=False):
                todo = await self._run_job(handle, todo, op, known, call_timeout, results)

    async def _run_job(
        self,
        handle: TerminalHandle,
        logins: list[int],
        op: Callable[[_Session], T],
        known: Callable[[T], AccountRead],
        call_timeout: float,
        results: dict[int, T | BridgeError],
    ) -> list[int]:
        """Run one job over `logins` with the lock held; the accounts it left for later (on a yield)."""
        blocked = self._refusal(handle)
        if blocked is not None:
            for login in logins:
                self._settle(handle, login, blocked, None)
                results[login] = blocked
            return []
        job = _BatchJob(self, handle, logins, op)
        fut = handle.worker.submit(job.run)
        handle.batch = job
        try:
            finished = await _await_progress(job, fut, call_timeout)
        except BaseException:  # cancelled: the worker stops after its current account
            job.stop = True
            self._replay(handle, logins, job.done[:], known, results)
            raise
        finally:
            handle.batch = None
        if not finished:  # stop, then snapshot: what the job appends later is ignored, like a late result
            job.stop = True
        done = job.done[:]
        if finished:
            fut.result()  # re-raises what escaped the job (never a per-account error)
        self._replay(handle, logins, done, known, results)
        rest = logins[len(done) :]
        if finished or not rest:
            return rest  # on a yield to a single read: the accounts left for the next job
        # Timed out: the account in progress fails with TerminalTimeout, the ones after it as still blocked.
        handle.stuck = fut
        calls = handle.calls
        self.metrics.failure(calls.current or calls.last or "initialize", "timeout")
        session = job.session
        tinfo = session.terminal_info if session is not None and session.creds.login == rest[0] else None
        timeout = TerminalTimeout(f"terminal {handle.name} did not answer within {call_timeout:g} s")
        self._settle(handle, rest[0], timeout, tinfo)
        results[rest[0]] = timeout
        for login in rest[1:]:
            blocked = self._refusal(handle) or _still_blocked(handle)
            self._settle(handle, login, blocked, None)
            results[login] = blocked
        return []

    def _replay(
        self,
        handle: TerminalHandle,
        logins: list[int],
        done: list[_Outcome],
        known: Callable[[T], AccountRead],
        results: dict[int, T | BridgeError],
    ) -> None:
        """Apply a job's outcomes, in order, as _call would have applied each account's. Only the last
        terminal_info seen is converted: each one overwrites the one before."""
        last_info = max((i for i, o in enumerate(done) if o.terminal_info is not None), default=-1)
        for i, (login, outcome) in enumerate(zip(logins, done, strict=False)):
            error = outcome.error
            if error is not None and not isinstance(error, BridgeError):
                log.error("terminal %s: unexpected error in a terminal call", handle.name, exc_info=error)
                error = TerminalUnavailable(f"terminal {handle.name} call failed: {type(error).__name__}")
            self._settle(handle, login, error, outcome.terminal_info if i == last_info else None)
            if error is None:
                self._known[login] = known(outcome.value)
                results[login] = outcome.value
            else:
                results[login] = error

    async def read_rates(
        self, login: int, symbol: str, timeframe: int, count: int, call_timeout: float
    ) -> tuple[Rate, ...]:
        """The last `count` bars of `symbol` (MT5 TIMEFRAME_* code) from the account's terminal, logged in
        to that account (the broker's own prices), oldest first, times in broker time. UnknownSymbol when
        the terminal has none; that says nothing of the terminal's health."""

        def op(s: _Session) -> tuple[Rate, ...] | None:
            s.account()
            return s.term.copy_rates_from_pos(symbol, timeframe, 0, count) or None

        bars = await self._call(self.handle(login), login, op, call_timeout)
        if bars is None:
            raise UnknownSymbol(f"no {symbol} bars on the terminal of account {login}")
        return bars

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
            except BridgeError as e:
                self._settle(handle, login, e, session.terminal_info)
                raise e from None
            except BaseException:
                if session.terminal_info is not None:
                    handle.terminal_info = _terminal_info_dict(session.terminal_info)
                raise
            self._settle(handle, login, None, session.terminal_info)
            return result

    def _settle(
        self,
        handle: TerminalHandle,
        login: int,
        error: BridgeError | None,
        terminal_info: TerminalInfo | None,
    ) -> None:
        """The handle's bookkeeping after one account's call, single or batched: where the terminal now
        stands (initialised, logged in to whom), its health, and the terminal_info it last answered."""
        if terminal_info is not None:
            handle.terminal_info = _terminal_info_dict(terminal_info)
        if error is None or isinstance(error, NoLiveData):  # logged in and connected: the terminal is fine
            handle.initialized, handle.current_login = True, login
            self._mark(handle, None)
        elif isinstance(error, (LoginFailed, AccountMismatch)):
            if isinstance(error, AccountMismatch):  # account_info answered, for the wrong account
                self.metrics.failure("account_info", "other")
            handle.initialized, handle.current_login = True, None
            self._mark(handle, None)
        else:
            handle.initialized, handle.current_login = False, None
            self._mark(handle, error)

    def _refusal(self, handle: TerminalHandle) -> BridgeError | None:
        """Why no call may be made on the terminal now, if any: the bridge is closing, or an earlier call
        that timed out still blocks its worker."""
        if self._closed:
            return TerminalUnavailable("the bridge is shutting down")
        if handle.stuck is not None and not handle.stuck.done():
            return _still_blocked(handle)
        return None

    async def _submit(
        self, handle: TerminalHandle, fn: Callable[[], T], call_timeout: float, *, locked: bool = False
    ) -> T:
        if self._closed:
            raise TerminalUnavailable("the bridge is shutting down")
        if not locked:
            async with self._locked(handle):
                return await self._submit(handle, fn, call_timeout, locked=True)
        refusal = self._refusal(handle)
        if refusal is not None:
            raise refusal
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
    async def _locked(self, handle: TerminalHandle, *, preempt: bool = True) -> AsyncIterator[None]:
        """The terminal's lock, with the wait for it observed. With `preempt`, a batch job holding it is
        asked to stop after its current account, so a single read waits for one account, not a batch."""
        start = time.perf_counter()
        if preempt and handle.batch is not None:
            handle.batch.yield_to_single = True
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


def _read_account(s: _Session) -> AccountRead:
    return AccountRead(s.account(), s.read_at)


def _read_positions(s: _Session) -> tuple[AccountRead, tuple[TradePosition, ...]]:
    read = AccountRead(s.account(), s.read_at)
    positions = s.term.positions_get()
    if positions is None:
        raise TerminalUnavailable(f"positions_get failed for account {s.creds.login}: {_fmt_error(s.term)}")
    return read, tuple(positions)


class _Outcome(NamedTuple):
    """One account's call in a batch job: its value or error, the terminal_info it saw, when it ended.
    A tuple: one is made per account of a batch, on the worker thread."""

    value: Any
    error: Exception | None
    terminal_info: TerminalInfo | None
    ended: float  # time.monotonic()


class _BatchJob(Generic[T]):
    """One terminal's accounts read one after another on its worker thread, each as _call would read it.

    The worker only appends to `done` and reads `stop`; the event loop reads `done` to see progress and
    applies every outcome to the handle itself, so nothing the job does after the loop gave up on it
    (a timeout, a cancelled request) reaches the handle. `stop` ends the job before its next account;
    `yield_to_single` too, but never before one account is read, so a batch always makes progress.
    """

    def __init__(
        self, pool: TerminalPool, handle: TerminalHandle, logins: list[int], op: Callable[[_Session], T]
    ) -> None:
        self._pool = pool
        self._term = handle.calls
        self._creds = [handle.accounts[login] for login in logins]
        self._op = op
        self._initialized = handle.initialized
        self._current = handle.current_login
        self.done: list[_Outcome] = []
        self.session: _Session | None = None  # the account in progress (or the last one)
        self.stop = False  # the loop gave up on the job (timeout, cancelled request)
        self.yield_to_single = False  # a single read waits for the lock: stop, but read one account first

    def run(self) -> None:
        for i, creds in enumerate(self._creds):
            if self.stop or (self.yield_to_single and i > 0):
                return
            login = creds.login
            value: Any = None
            error: Exception | None = None
            if self._pool.closed:  # what _submit refuses with, per account
                error = TerminalUnavailable("the bridge is shutting down")
                self.done.append(_Outcome(None, error, None, time.monotonic()))
                self._initialized, self._current = False, None
                continue
            session = self.session = _Session(self._term, creds, self._initialized, self._current)
            try:
                value = self._op(session)
            except Exception as e:  # the loop turns a non-BridgeError into TerminalUnavailable, as _submit
                error = e
            self._initialized, self._current = _state_after(login, error)
            self.done.append(_Outcome(value, error, session.terminal_info, time.monotonic()))


def _state_after(login: int, error: Exception | None) -> tuple[bool, int | None]:
    """(initialized, current login) after a call on `login`: what TerminalPool._settle records."""
    if error is None or isinstance(error, NoLiveData):
        return True, login
    if isinstance(error, (LoginFailed, AccountMismatch)):
        return True, None
    return False, None


async def _await_progress(job: _BatchJob[Any], fut: Future[None], call_timeout: float) -> bool:
    """Wait for the job; True when it ended, False when no account completed for `call_timeout` (the
    deadline moves with each completed account, so it bounds each account like a single call)."""
    waiter = asyncio.wrap_future(fut)
    seen, last = 0, time.monotonic()
    while True:
        remaining = last + call_timeout - time.monotonic()
        if remaining > 0:
            await asyncio.wait((waiter,), timeout=remaining)
        if waiter.done():
            return True
        n = len(job.done)
        if n == seen:
            return False
        seen, last = n, job.done[n - 1].ended


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
        self.read_at: datetime  # set by _read, which account() goes through before it returns

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
        self.read_at = self.term.now()
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
