"""The sync cycle against our simulated bridge over real HTTP: the batch endpoint when advertised,
the per-account fallback, and the simulator's faults mapped to the closed set of reasons."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from agent.domain.accounts import DataSource, Reason
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from bridge.api import create_app
from bridge.simulated import simulated_pool

TOKEN = "bridge-token-for-tests"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    await st.open()
    yield st
    await st.close()


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[object, str]]:
    pool = simulated_pool(static=True, seed=7)
    server = TestServer(create_app(pool, token=TOKEN, call_timeout=0.5), host="127.0.0.1")
    await server.start_server()
    yield pool, str(server.make_url("")).rstrip("/")
    await server.close()
    pool.close()


async def _service(store: Store, url: str, *, use_batch: bool = True) -> tuple[SyncService, BridgeClient]:
    client = BridgeClient(url, token=TOKEN, timeout=5.0)
    svc = SyncService(store, BridgeSource(client, use_batch=use_batch), health_backoff=0.01)
    assert await svc.ensure_ready()
    return svc, client


@pytest.mark.parametrize("use_batch", [True, False])
async def test_stored_values_equal_what_the_bridge_served(bridge, store, use_batch: bool) -> None:
    _, url = bridge
    svc, client = await _service(store, url, use_batch=use_batch)
    try:
        run = await svc.run_cycle()
        assert run.result is RunResult.SUCCESS and run.synced_live == 7
        assert run.bridge_batch is use_batch
        # Static simulator: what a fresh read serves now is what it served during the cycle.
        for rec in await store.accounts.get_accounts():
            served = (await client.get_json(f"/api/mt5/account/{rec.account}/info", "info"))["live_data"]
            for f in ("balance", "equity", "profit", "margin", "margin_free", "margin_level", "leverage"):
                assert getattr(rec, f) == served[f], (rec.account, f)
            assert rec.currency == served["currency"] and rec.trade_allowed == served["trade_allowed"]
            assert rec.name == served["name"] and rec.server == served["server"]
            assert rec.data_source == DataSource.LIVE.value
            assert rec.live_data_at is not None
    finally:
        await client.close()


@pytest.mark.parametrize("use_batch", [True, False])
@pytest.mark.parametrize(
    ("fault", "reason", "stored"),
    [
        ("wrong_account", Reason.ACCOUNT_MISMATCH, False),
        ("hang", Reason.TIMEOUT, False),
        # Issue 10 finding 14: each bridge error code has its own reason, not a generic http_status.
        ("login_failed", Reason.LOGIN_FAILED, False),
        ("disconnected", Reason.NO_LIVE_DATA, False),
        ("no_live_data", None, True),
    ],
)
async def test_simulated_faults(bridge, store, use_batch, fault, reason, stored) -> None:
    pool, url = bridge
    svc, client = await _service(store, url, use_batch=use_batch)
    try:
        first = await svc.run_cycle()  # gives the bridge a stored_data for every account
        assert first.result is RunResult.SUCCESS
        bad = 891215
        before = await store.accounts.get_account(bad)
        pool.set_fault(bad, fault)
        run = await svc.run_cycle()
        after = await store.accounts.get_account(bad)
        if stored:
            assert run.synced_stored == 1 and run.failed == 0
            assert after.data_source == DataSource.STORED.value
            assert after.live_data_at == before.live_data_at
        else:
            assert run.failures == {str(bad): reason.value}
            assert after.balance == before.balance and after.updated_at == before.updated_at
        assert run.synced_live == 6
        pool.set_fault(bad, None)
        if fault == "hang":
            return  # the hung terminal recovers on its own schedule; covered by the bridge tests
        assert (await svc.run_cycle()).result is RunResult.SUCCESS
    finally:
        await client.close()


@pytest.mark.parametrize("use_batch", [True, False])
async def test_no_live_data_without_stored_data_is_its_own_reason(bridge, store, use_batch: bool) -> None:
    """Issue 10 finding 14: the terminal gives no data and the bridge has none stored yet (its first
    read): reason no_live_data, in the batch (502 entry with live_error) and in /info alike."""
    pool, url = bridge
    bad = 891215
    pool.set_fault(bad, "no_live_data")
    svc, client = await _service(store, url, use_batch=use_batch)
    try:
        run = await svc.run_cycle()
        assert run.failures == {str(bad): Reason.NO_LIVE_DATA.value}
        assert run.synced_live == 6 and run.synced_stored == 0
        assert svc.fleet.snapshot().failures[(bad, Reason.NO_LIVE_DATA)] == 1
    finally:
        await client.close()
