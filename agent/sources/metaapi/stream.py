"""One MetaAPI account's streaming connection, kept alive: connect, wait for synchronization, watch it,
and recreate it when it does not recover.

The SDK reconnects its websocket by itself, but its users report connections that never synchronize
again, and idle ones that go silent; both look alive to the SDK. So a supervisor task per account:
- connect (get the account, open a streaming connection with our listener, `wait_synchronized`), the
  whole of it bounded by `sync_timeout`;
- then watch every `check_interval`: not synchronized for longer than `sync_timeout`, or no packet at all
  for longer than `silence`, and the connection is closed and created anew;
- a failed attempt waits `Backoff` (exponential, jittered, capped); a rate limit
  (`TooManyRequestsException`) waits the server's `recommendedRetryTime` instead.
Every message that comes from an exception passes through `scrub` (the token never reaches a log).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from agent.domain.tasks import cancel_all
from agent.sources.metaapi.backoff import Backoff, is_rate_limit, retry_after
from agent.sources.metaapi.book import AccountBook, Listener
from agent.sources.metaapi.settings import Bounds

log = logging.getLogger("mt5_agent.sources.metaapi")

# Why the last connection attempt failed or the last connection was recreated (a closed set: metrics).
Problem = Literal[
    "connect_failed", "rate_limited", "sync_timeout", "silent", "unknown_account", "unauthorized"
]
PROBLEMS: tuple[Problem, ...] = (
    "connect_failed",
    "rate_limited",
    "sync_timeout",
    "silent",
    "unknown_account",
    "unauthorized",
)


class _Recreate(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class ConnectionState:
    """One account's connection health, for metrics and `/api/admin/mt5-health` (no secret, no
    MetaAPI account id: the login is the account's name everywhere else)."""

    account: int
    connected: bool  # the websocket to a MetaAPI server instance is up
    connected_to_broker: bool  # MetaAPI's terminal is connected to the broker
    synchronized: bool  # the terminal state is synchronized: reads are live
    last_packet_age_seconds: float | None
    connections_created: int  # connections opened so far (1 after the first success)
    recreated: int  # connections closed by a watchdog (sync_timeout, silent)
    consecutive_failures: int  # failed connection attempts since the last success
    last_problem: Problem | None
    retry_in_seconds: float | None  # when the next attempt is due, while waiting for it
    stale_updates_dropped: int  # position updates dropped as older than held or of a removed position


def _name_is(exc: BaseException, *names: str) -> bool:
    return any(t.__name__ in names for t in type(exc).__mro__)


def problem_of(exc: BaseException) -> Problem:
    """A failed attempt's problem, from the SDK's exception names (the SDK is imported lazily)."""
    if isinstance(exc, _Recreate):
        return exc.problem
    if is_rate_limit(exc):
        return "rate_limited"
    if _name_is(exc, "NotFoundException"):
        return "unknown_account"
    if _name_is(exc, "UnauthorizedException"):
        return "unauthorized"
    if isinstance(exc, TimeoutError) or _name_is(exc, "TimeoutException"):
        return "sync_timeout"
    return "connect_failed"


class AccountStream:
    def __init__(
        self,
        book: AccountBook,
        account_id: str,
        api: Callable[[], Any],
        bounds: Bounds,
        backoff: Backoff,
        scrub: Callable[[str], str],
    ) -> None:
        self.book = book
        self.account_id = account_id
        self._api = api
        self.bounds = bounds
        self.backoff = backoff
        self._scrub = scrub
        self.connection: Any = None
        self.synchronized_once = False  # wait_synchronized returned for the current connection
        self.connections_created = 0
        self.recreated = 0
        self.failures = 0
        self.last_problem: Problem | None = None
        self._retry_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.attempt_times: list[float] = []  # monotonic start of every connection attempt (tests, benches)

    def __repr__(self) -> str:
        return f"AccountStream(login={self.book.login}, connections={self.connections_created})"

    # --- state ----------------------------------------------------------------------------------

    @property
    def synchronized(self) -> bool:
        conn = self.connection
        return self.synchronized_once and conn is not None and getattr(conn, "synchronized", False) is True

    def silent(self) -> bool:
        age = self.book.packet_age()
        return age is not None and age > self.bounds.silence

    def state(self) -> ConnectionState:
        retry = None
        if self._retry_at is not None:
            retry = max(0.0, self._retry_at - self.book.monotonic())
        age = self.book.packet_age() if self.connection is not None else None
        return ConnectionState(
            account=self.book.login,
            connected=self.connection is not None and self.book.connected,
            connected_to_broker=self.connection is not None and self.book.connected_to_broker,
            synchronized=self.synchronized,
            last_packet_age_seconds=None if age is None else round(age, 3),
            connections_created=self.connections_created,
            recreated=self.recreated,
            consecutive_failures=self.failures,
            last_problem=self.last_problem,
            retry_in_seconds=None if retry is None else round(retry, 3),
            stale_updates_dropped=self.book.stale_dropped,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"metaapi-{self.book.login}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Python 3.11's wait_for (in _connect and _close) swallows a cancel that lands as its inner
            # call completes, and the retry loop would then run on for ever: cancelled until it ends.
            await cancel_all([task])
        await self._close()

    async def _run(self) -> None:
        delay = 0.0
        while True:
            if delay > 0:
                self._retry_at = self.book.monotonic() + delay
                await asyncio.sleep(delay)
            self._retry_at = None
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every SDK failure is a retry, told in the log
                await self._close()
                delay = self._failed(exc)
                continue
            self.failures = 0
            problem = await self._watch()
            await self._close()
            self.recreated += 1
            self.last_problem = problem
            log.warning("metaapi login %s: connection recreated (%s)", self.book.login, problem)
            delay = 0.0  # a watchdog's recreation is immediate; a failure to reconnect backs off

    def _failed(self, exc: Exception) -> float:
        """Count a failed attempt, log it (scrubbed) and return the delay before the next."""
        self.failures += 1
        self.last_problem = problem_of(exc)
        wait = retry_after(exc, datetime.now(UTC), self.bounds.max_retry_after)
        # the server's retry time when it gave one, else our backoff
        delay = wait if wait is not None else self.backoff.delay(self.failures - 1)
        detail = self._scrub(f"{type(exc).__name__}: {str(exc)[:300]}")
        level = logging.ERROR if self.last_problem in ("unknown_account", "unauthorized") else logging.WARNING
        log.log(
            level,
            "metaapi login %s: connection attempt %d failed (%s: %s); next in %.2fs",
            self.book.login,
            self.failures,
            self.last_problem,
            detail,
            delay,
        )
        return delay

    async def _connect(self) -> None:
        self.attempt_times.append(self.book.monotonic())
        self.synchronized_once = False
        generation = self.book.generation + 1
        self.book.reset(generation)
        bound = self.bounds.sync_timeout

        async def steps() -> None:
            account = await self._api().metatrader_account_api.get_account(self.account_id)
            conn = account.get_streaming_connection()
            self.connection = conn
            self.connections_created += 1
            conn.add_synchronization_listener(Listener(self.book, generation))
            await conn.connect()
            await conn.wait_synchronized({"timeoutInSeconds": bound})
            self._seed(conn)

        try:
            await asyncio.wait_for(steps(), bound)
        except TimeoutError:
            raise _Recreate("sync_timeout") from None
        self.synchronized_once = True
        log.info("metaapi login %s: synchronized", self.book.login)

    def _seed(self, conn: Any) -> None:
        """When the server did not resend the positions (their hash matched the SDK's cache, so there was
        no `on_positions_replaced`), take the full set from the SDK's terminal state, which holds it."""
        state = getattr(conn, "terminal_state", None)
        if not self.book.replaced:
            positions = getattr(state, "positions", None)
            if isinstance(positions, list):
                self.book.replace(positions)
                self.book.positions_synced = True
        if self.book.info is None:
            info = getattr(state, "account_information", None)
            if isinstance(info, dict):
                self.book.info = dict(info)

    async def _watch(self) -> Problem:
        """Until the connection must be recreated: the reason."""
        unsynced_since: float | None = None
        while True:
            await asyncio.sleep(self.bounds.check_interval)
            now = self.book.monotonic()
            if self.silent():
                return "silent"
            if self.synchronized:
                unsynced_since = None
            elif unsynced_since is None:
                unsynced_since = now
            elif now - unsynced_since >= self.bounds.sync_timeout:
                return "sync_timeout"

    async def _close(self) -> None:
        conn, self.connection = self.connection, None
        self.synchronized_once = False
        self.book.generation += 1  # the old listener's late callbacks are ignored from now on
        if conn is None:
            return
        try:
            closing: Awaitable[Any] = conn.close()
            await asyncio.wait_for(closing, self.bounds.close_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a connection that fails to close is dropped all the same
            detail = self._scrub(f"{type(exc).__name__}: {str(exc)[:300]}")
            log.warning("metaapi login %s: closing a connection failed (%s)", self.book.login, detail)
