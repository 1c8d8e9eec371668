"""Accounts sharing a terminal, over real HTTP against the simulated bridge: the poller reads each one's
positions and deals back to back, so a round costs one login per account (not one per read), while an
account with a terminal to itself is read in the round's batch as usual."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent.events.poller import PositionsPoller
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from bridge.api import create_app
from bridge.config import AccountEntry
from bridge.simulated import demo_accounts, simulated_pool

LOGIN_COST = 0.02


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'events.db'}")
    await s.open()
    yield s
    await s.close()


def _logins(pool) -> float:
    value = pool.metrics.registry.get_sample_value(
        "mt5_bridge_terminal_call_duration_seconds_count", {"function": "login"}
    )
    return value or 0.0


async def test_a_shared_terminal_costs_one_login_per_account_and_round(store: Store) -> None:
    entries = demo_accounts()
    # three accounts on terminal "shared", the others each on their own
    grouped = [
        AccountEntry(**{**e.model_dump(), "terminal": "shared" if i < 3 else None})
        for i, e in enumerate(entries)
    ]
    sim_now = [float(int(time.time())) - 6 * 3600]
    pool = simulated_pool(grouped, clock=lambda: sim_now[0], seed=7, login_cost=LOGIN_COST)
    server = TestServer(create_app(pool), host="127.0.0.1")
    await server.start_server()
    client = BridgeClient(str(server.make_url("")), timeout=5.0)
    source = BridgeSource(client)
    try:
        await source.list_accounts()
        shared = [e.login for e in entries[:3]]
        assert [source.shared_terminal(a) for a in shared] == ["shared"] * 3
        assert all(source.shared_terminal(e.login) is None for e in entries[3:])
        poller = PositionsPoller(
            store,
            source,
            lambda: [e.login for e in entries],
            interval=1.0,
            deadline=10.0,
            hold=10.0,
            clock=lambda: datetime.fromtimestamp(sim_now[0], UTC),
        )
        for _ in range(3):  # the first rounds: history swept, the clock's offset learnt
            assert not (await poller.tick()).failed  # type: ignore[union-attr]
            sim_now[0] += 5
        rounds = 5
        before, batches = _logins(pool), source.batch_requests
        for _ in range(rounds):
            result = await poller.tick()
            assert result is not None and not result.failed, result
            sim_now[0] += 5
        # one login per shared account and round (the terminal switches to it once for both reads);
        # a dedicated terminal stays logged in
        assert _logins(pool) - before == rounds * len(shared)
        assert source.batch_requests - batches == rounds  # the others: one batch request a round
    finally:
        await client.close()
        await server.close()
        pool.close()
        pool.join(5.0)


async def test_a_terminal_cycle_longer_than_the_deadline_starves_no_account(store: Store) -> None:
    """Four accounts on one terminal, 0.3 s logins: a cycle over them (1.2 s) outlasts the round deadline
    (0.5 s). Each account's deadline starts at its turn, so none times out waiting for the others, and
    all are polled in turn (the rounds in between skip them while they wait)."""
    entries = [AccountEntry(**{**e.model_dump(), "terminal": "shared"}) for e in demo_accounts()[:4]]
    pool = simulated_pool(entries, clock=lambda: time.time() - 6 * 3600, seed=7, login_cost=0.3)
    server = TestServer(create_app(pool), host="127.0.0.1")
    await server.start_server()
    client = BridgeClient(str(server.make_url("")), timeout=5.0)
    source = BridgeSource(client)
    try:
        await source.list_accounts()
        logins = [e.login for e in entries]
        polls: dict[int, int] = dict.fromkeys(logins, 0)

        class Listener:
            def on_account_polled(self, account: int, open_positions: int, at: datetime) -> None:
                polls[account] += 1

            def __getattr__(self, name: str):  # the other PollListener methods
                return lambda *a, **k: None

        poller = PositionsPoller(
            store,
            source,
            lambda: logins,
            interval=0.1,
            deadline=0.5,
            listener=Listener(),  # type: ignore[arg-type]
        )
        poller.start()
        try:
            async with asyncio.timeout(20):
                while min(polls.values()) < 2:
                    await asyncio.sleep(0.05)
        finally:
            await poller.stop(grace=5.0)
        assert not poller.last_failure, poller.last_failure
    finally:
        await client.close()
        await server.close()
        pool.close()
        pool.join(5.0)
