"""Shared fixtures: a real bridge app on a loopback aiohttp server over a simulated pool.

Helpers are handed out as fixtures (not imported from here) so the tests work whether or not
tests/bridge becomes a package.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.api import create_app
from bridge.pool import TerminalPool
from bridge.simulated import SimulatedTerminal, simulated_pool

TOKEN = "test-token-5f1c"


@dataclass
class Bridge:
    """A running bridge plus its pool, with a get() that insists every answer is JSON."""

    client: TestClient
    pool: TerminalPool
    token: str | None

    async def get(
        self, path: str, *, auth: bool = True, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if auth and self.token:
            h.setdefault("Authorization", f"Bearer {self.token}")
        async with self.client.get(path, headers=h) as r:
            text = await r.text()
            assert r.content_type == "application/json", f"{r.status} {r.content_type}: {text[:200]}"
            assert "Traceback" not in text
            return r.status, await r.json()

    def sim(self, login: int) -> SimulatedTerminal:
        term = self.pool.terminal(login)
        assert isinstance(term, SimulatedTerminal)
        return term


MakeBridge = Callable[..., Awaitable[Bridge]]


@pytest.fixture
async def make_bridge(aiohttp_client: Any) -> Any:
    """make_bridge(pool=None, *, token=TOKEN, call_timeout=5.0, **simulated_pool kwargs). On teardown
    the pool is closed and every worker thread must end, hung calls included."""
    pools: list[TerminalPool] = []

    async def make(
        pool: TerminalPool | None = None, *, token: str | None = TOKEN, call_timeout: float = 5.0, **kw: Any
    ) -> Bridge:
        pool = pool if pool is not None else simulated_pool(**kw)
        pools.append(pool)
        client = await aiohttp_client(create_app(pool, token=token, call_timeout=call_timeout))
        return Bridge(client, pool, token)

    yield make
    for pool in pools:
        pool.close()
    assert all(pool.join(5.0) for pool in pools), "a terminal worker thread did not end after close()"


def _busy_clock(login: int, **kw: Any) -> Callable[[], float]:
    """A fixed clock at which `login` holds open positions. The simulator draws trades per 5-minute
    slot from the wall clock, so "now" alone sometimes has none: scan back minute by minute."""
    import time

    start = float(int(time.time()))
    for minutes in range(0, 24 * 60):
        t = start - 60.0 * minutes
        pool = simulated_pool(clock=lambda t=t: t, **kw)
        try:
            term = pool.terminal(login)
            assert isinstance(term, SimulatedTerminal)
            now = term.now_ms()
            if any(trade.close_ms > now for trade in term.simulated_trades(login)):
                return lambda t=t: t
        finally:
            pool.close()
    raise AssertionError(f"no moment in the last day at which {login} holds a position")


@pytest.fixture
def busy_clock() -> Callable[..., Callable[[], float]]:
    return _busy_clock


async def _wait_until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll a condition on the loop; fail loudly instead of sleeping and hoping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    return _wait_until


@pytest.fixture
def token() -> str:
    return TOKEN
