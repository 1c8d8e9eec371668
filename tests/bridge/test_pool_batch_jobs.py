"""Batch reads run one worker job per terminal (TerminalPool._serve_batch), yet every account gets what a
single read would give it: the same result or error, the same handle bookkeeping and metrics, `call_timeout`
per account (a hung account fails alone in time, the rest of its terminal as blocked, other terminals
unaffected), login skipping, and a clean close with a batch hung in a terminal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bridge.errors import BridgeError, TerminalTimeout, TerminalUnavailable, UnknownAccount
from bridge.pool import AccountRead, TerminalPool
from bridge.simulated import FAULTS, SimulatedTerminal, demo_accounts, simulated_pool

A, B, C, D, E, F, G = (x.login for x in demo_accounts())
ORDER = [A, E, B, F, C]  # round-robin over 2 terminals: sim-1 serves A, B, C and sim-2 serves E, F
EIGHT = [A, B, C, D, E, F, G, 1_000_001]  # one terminal's worth for the timing tests
CALL_TIMEOUT = 0.4
NOW = 1_796_000_000.0  # one fixed instant for the pools compared: same clock, same values


@pytest.fixture
def pools() -> Iterator[Callable[..., TerminalPool]]:
    """pools(**simulated_pool kwargs) or pools(pool): closed on teardown; every worker thread must end."""
    made: list[TerminalPool] = []

    def make(pool: TerminalPool | None = None, **kw: Any) -> TerminalPool:
        made.append(pool if pool is not None else simulated_pool(**kw))
        return made[-1]

    yield make
    for pool in made:
        pool.close()
    assert all(pool.join(5.0) for pool in made), "a terminal worker thread did not end after close()"


def outcome(result: Any) -> Any:
    """A comparable form of one account's result: the error's class, status, code and message, or the
    value itself (static clock: two pools read the same values)."""
    if isinstance(result, BridgeError):
        return type(result).__name__, result.status, result.code, result.message
    return result


def handle_states(pool: TerminalPool) -> list[tuple[Any, ...]]:
    return [
        (h.name, h.healthy, h.last_error, h.initialized, h.current_login, h.terminal_info)
        for h in pool.handles
    ]


def counters(pool: TerminalPool) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Failures by (function, reason) and calls by function: what /metrics exports about MT5 calls."""
    wanted = ("mt5_bridge_terminal_call_failures_total", "mt5_bridge_terminal_call_duration_seconds_count")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in pool.metrics.registry.collect()
        for s in family.samples
        if s.name in wanted
    }


def lock_waits(pool: TerminalPool) -> float:
    return next(
        s.value
        for family in pool.metrics.registry.collect()
        for s in family.samples
        if s.name == "mt5_bridge_terminal_lock_wait_seconds_count"
    )


async def singles(pool: TerminalPool, logins: list[int], positions: bool, timeout: float) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for login in logins:
        try:
            if positions:
                out[login] = await pool.read_positions(login, timeout)
            else:
                out[login] = await pool.read_account(login, timeout)
        except BridgeError as e:
            out[login] = e
    return out


async def batch(pool: TerminalPool, logins: list[int], positions: bool, timeout: float) -> dict[int, Any]:
    if positions:
        return dict(await pool.read_many_positions(logins, timeout))
    return dict(await pool.read_many(logins, timeout))


def sim(pool: TerminalPool, login: int) -> SimulatedTerminal:
    term = pool.terminal(login)
    assert isinstance(term, SimulatedTerminal)
    return term


@pytest.mark.parametrize("positions", [False, True], ids=["accounts", "positions"])
@pytest.mark.parametrize("when", ["construction", "runtime"])
@pytest.mark.parametrize("fault", FAULTS)
async def test_batch_equals_single_reads_under_every_fault(pools, fault, when, positions) -> None:
    """Two identical pools, the faulty account mid-terminal: one read account by account, the other in a
    batch. Results, handle state, last known reads and MT5 call metrics must be the same."""
    kw: dict[str, Any] = dict(accounts=ORDER, terminals=2, static=True, clock=lambda: NOW)
    if when == "construction":
        kw["faults"] = {B: fault}
    one, many = pools(**kw), pools(**kw)
    assert one.handle(A) is one.handle(B) is one.handle(C) is not one.handle(E)
    if when == "runtime":  # logged in everywhere first: the session's login skipping is exercised
        for pool in (one, many):
            assert all(
                isinstance(r, AccountRead) for r in (await pool.read_many(ORDER, CALL_TIMEOUT)).values()
            )
            pool.set_fault(B, fault)

    rounds = []
    for _ in range(2):  # twice: the second round starts from the state the first one left
        got_one = await singles(one, ORDER, positions, CALL_TIMEOUT)
        got_many = await batch(many, ORDER, positions, CALL_TIMEOUT)
        assert list(got_many) == ORDER
        assert {k: outcome(v) for k, v in got_many.items()} == {k: outcome(v) for k, v in got_one.items()}
        assert handle_states(many) == handle_states(one)
        assert {x: many.last_known(x) for x in ORDER} == {x: one.last_known(x) for x in ORDER}
        assert counters(many) == counters(one)
        assert sim(many, A).login_calls == sim(one, A).login_calls
        assert sim(many, E).login_calls == sim(one, E).login_calls
        rounds.append(got_many)

    first, second = rounds
    assert (fault == "bad_trades") is not isinstance(first[B], BridgeError)  # it reads fine, badly
    if fault == "hang":  # A before it is read, C after it is blocked, and the next round all of sim-1
        assert not isinstance(first[A], BridgeError)
        assert outcome(first[B])[2] == "terminal_timeout" and "did not answer" in str(first[B])
        assert "still blocked" in str(first[C]) and "still blocked" in str(second[A])
        assert many.handle(B).stuck is not None and not many.handle(B).stuck.done()
    else:  # the same terminal keeps serving its other accounts
        assert not any(isinstance(r[x], BridgeError) for r in rounds for x in (A, C))
    assert not any(isinstance(r[x], BridgeError) for r in rounds for x in (E, F))


class _Exploding(SimulatedTerminal):
    """A terminal whose account_info raises something that is not a BridgeError for one account."""

    explode: int | None = None

    def account_info(self) -> Any:
        if self._current == self.explode:
            raise RuntimeError("terminal package bug")
        return super().account_info()


def _exploding_pool() -> TerminalPool:
    entries = [x for x in demo_accounts() if x.login in (A, B, C)]
    term = _Exploding(entries, name="boom", static=True, clock=lambda: NOW)
    term.explode = B
    return TerminalPool([(term, [x.credentials() for x in entries])])


async def test_an_unexpected_exception_is_terminal_unavailable_as_in_a_single_read(pools, caplog) -> None:
    one, many = pools(_exploding_pool()), pools(_exploding_pool())
    got_one = await singles(one, [A, B, C], False, CALL_TIMEOUT)
    got_many = await batch(many, [A, B, C], False, CALL_TIMEOUT)
    assert {k: outcome(v) for k, v in got_many.items()} == {k: outcome(v) for k, v in got_one.items()}
    assert outcome(got_many[B]) == (
        "TerminalUnavailable",
        502,
        "terminal_unavailable",
        "terminal boom call failed: RuntimeError",
    )
    assert isinstance(got_many[A], AccountRead) and isinstance(got_many[C], AccountRead)
    assert handle_states(many) == handle_states(one)
    logged = [r for r in caplog.records if "unexpected error in a terminal call" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in logged)


async def test_results_come_in_the_order_asked(pools) -> None:
    pool = pools(accounts=ORDER, terminals=2, static=True)
    asked = [F, 123, C, A, E, B]
    got = await pool.read_many(asked, CALL_TIMEOUT)
    assert list(got) == asked
    assert isinstance(got[123], UnknownAccount)
    for login in (F, C, A, E, B):
        result = got[login]
        assert isinstance(result, AccountRead) and result.info.login == login
    got_positions = await pool.read_many_positions(list(reversed(asked)), CALL_TIMEOUT)
    assert list(got_positions) == list(reversed(asked))


async def test_a_hang_mid_batch_fails_that_account_in_time_and_blocks_only_its_terminal(pools) -> None:
    accounts = [
        {"login": x, "password": "p", "server": "S", "terminal": t}
        for x, t in ((A, "t1"), (B, "t1"), (C, "t1"), (D, "t1"), (E, "t2"), (F, "t2"))
    ]
    pool = pools(accounts=accounts, static=True, faults={B: "hang"})
    t1 = pool.handle(A)
    t0 = time.perf_counter()
    got = await pool.read_many([A, B, C, D, E, F], CALL_TIMEOUT)
    elapsed = time.perf_counter() - t0
    assert CALL_TIMEOUT <= elapsed < CALL_TIMEOUT + 1.5, elapsed
    assert isinstance(got[A], AccountRead)
    assert outcome(got[B]) == (
        "TerminalTimeout",
        504,
        "terminal_timeout",
        f"terminal t1 did not answer within {CALL_TIMEOUT:g} s",
    )
    for login in (C, D):
        assert outcome(got[login])[3] == "terminal t1 is still blocked in an earlier call that timed out"
    assert isinstance(got[E], AccountRead) and isinstance(got[F], AccountRead)
    assert t1.stuck is not None and not t1.stuck.done()
    assert not t1.healthy and t1.last_error is not None and t1.last_error.startswith("terminal_timeout")
    assert t1.current_login is None and not t1.initialized
    assert pool.handle(E).healthy
    assert (
        counters(pool)[
            ("mt5_bridge_terminal_call_failures_total", (("function", "login"), ("reason", "timeout")))
        ]
        == 1
    )
    assert sim(pool, B).hung_calls == 1

    # Singles fail fast meanwhile; once the hang ends the job ends too, and the next batch reads all.
    with pytest.raises(TerminalTimeout, match="still blocked"):
        await pool.read_account(D, CALL_TIMEOUT)
    logins_before = sim(pool, A).login_calls
    pool.set_fault(B, None)
    await asyncio.wait_for(asyncio.wrap_future(t1.stuck), 5.0)
    assert sim(pool, A).login_calls == logins_before, "the job must not go on to C and D after giving up"
    again = await pool.read_many([A, B, C, D, E, F], CALL_TIMEOUT)
    assert all(isinstance(r, AccountRead) for r in again.values()), again
    assert t1.healthy and t1.current_login == D


async def test_call_timeout_bounds_each_account_not_the_whole_batch(pools) -> None:
    """8 accounts on one terminal at ~0.15 s each (login, terminal_info, account_info at 50 ms): the
    batch takes far longer than call_timeout, and no account fails."""
    logins = EIGHT
    pool = pools(accounts=logins, terminals=1, static=True, latency=0.05)
    t0 = time.perf_counter()
    got = await pool.read_many(logins, CALL_TIMEOUT)
    elapsed = time.perf_counter() - t0
    assert elapsed > 2 * CALL_TIMEOUT, elapsed
    assert all(isinstance(r, AccountRead) for r in got.values()), got
    assert pool.handle(A).stuck is None and pool.handle(A).healthy


async def test_login_skipping_and_one_lock_per_terminal(pools) -> None:
    shared = pools(accounts=[A, B], terminals=1, static=True)
    term = sim(shared, A)
    waits = lock_waits(shared)
    await shared.read_many([A, B], CALL_TIMEOUT)
    assert term.login_calls == 2
    assert lock_waits(shared) == waits + 1, "one job per terminal: one lock acquisition"
    await shared.read_many([A, B], CALL_TIMEOUT)
    assert term.login_calls == 4  # A then B: the terminal switches for each
    await shared.read_account(B, CALL_TIMEOUT)
    await shared.read_many([B], CALL_TIMEOUT)
    assert term.login_calls == 4, "the terminal is already on B: no login"
    await shared.read_many_positions([B, A], CALL_TIMEOUT)
    assert term.login_calls == 5 and shared.handle(A).current_login == A

    alone = pools(accounts=[A, B, C], static=True)  # one terminal per account: each stays logged in
    before = counters(alone)
    for _ in range(3):
        got = await alone.read_many([A, B, C], CALL_TIMEOUT)
        assert all(isinstance(r, AccountRead) for r in got.values())
    assert [sim(alone, x).login_calls for x in (A, B, C)] == [1, 1, 1]
    after = counters(alone)
    for function, n in (("login", 3), ("terminal_info", 9), ("account_info", 9)):
        key = ("mt5_bridge_terminal_call_duration_seconds_count", (("function", function),))
        assert after[key] - before[key] == n, function


async def test_a_single_read_waits_for_one_account_not_the_whole_batch(pools, wait_until) -> None:
    logins = EIGHT
    pool = pools(accounts=logins, terminals=1, static=True, latency=0.05)
    term = sim(pool, A)
    task = asyncio.create_task(pool.read_many(logins, 5.0))
    await wait_until(lambda: term.login_calls >= 2, "the batch to be under way")
    t0 = time.perf_counter()
    read = await pool.read_account(logins[-1], 5.0)
    single = time.perf_counter() - t0
    assert read.info.login == logins[-1]
    assert not task.done(), "the single read should have gone ahead of the rest of the batch"
    assert single < 0.9, single  # one account in progress + its own read (~0.15 s each)
    got = await task
    assert list(got) == logins and all(isinstance(r, AccountRead) for r in got.values())
    assert lock_waits(pool) >= 3  # the batch, the single read, the batch again


async def test_a_cancelled_batch_stops_its_job_and_frees_the_terminal(pools, wait_until) -> None:
    logins = EIGHT
    pool = pools(accounts=logins, terminals=1, static=True, latency=0.05)
    term, handle = sim(pool, A), pool.handle(A)
    task = asyncio.create_task(pool.read_many(logins, 5.0))
    await wait_until(lambda: term.login_calls >= 2, "the batch to be under way")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel = term.login_calls
    assert handle.batch is None and not handle.lock.locked()
    read = await pool.read_account(logins[-1], 5.0)  # queued behind the account in progress, then read
    assert read.info.login == logins[-1]
    # at most the account in progress (its login may land just after the cancel) and the single read
    assert term.login_calls <= at_cancel + 2, "the job went on after the batch was cancelled"


async def test_close_ends_a_hung_batch(pools, wait_until) -> None:
    accounts = [
        {"login": x, "password": "p", "server": "S", "terminal": t}
        for x, t in ((A, "t1"), (B, "t1"), (C, "t2"))
    ]
    pool = pools(accounts=accounts, static=True, faults={A: "hang"})
    assert isinstance(await pool.read_account(C, 5.0), AccountRead)
    task = asyncio.create_task(pool.read_many([A, B, C], 30.0))
    await wait_until(lambda: sim(pool, A).hung_calls == 1, "the batch to hang on A")
    pool.close()
    got = await asyncio.wait_for(task, 5.0)
    assert isinstance(got[A], BridgeError) and not isinstance(got[A], TerminalTimeout)
    assert outcome(got[B]) == (
        "TerminalUnavailable",
        502,
        "terminal_unavailable",
        "the bridge is shutting down",
    )
    assert isinstance(got[C], AccountRead | TerminalUnavailable)
    assert pool.join(2.0), "the worker threads must end once the pool is closed"


async def test_close_after_a_batch_timed_out(pools) -> None:
    pool = pools(accounts=[A, B], terminals=1, static=True, faults={A: "hang"})
    got = await pool.read_many([A, B], 0.2)
    assert isinstance(got[A], TerminalTimeout) and "still blocked" in str(got[B])
    pool.close()
    assert pool.join(2.0)
    got = await pool.read_many([A, B], 0.2)
    assert all(outcome(r)[3] == "the bridge is shutting down" for r in got.values())
