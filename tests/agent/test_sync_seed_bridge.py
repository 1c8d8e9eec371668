"""The sync cycle against a real HTTP server speaking the seed's bridge JSON: every case of the seed's
section 4 plus broken JSON, truncated bodies, resets, NaN/string balances and a wrong login. For each,
what was written and what was not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from agent.domain.accounts import DataSource, Reason
from agent.domain.runs import RunResult
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import AlreadyRunning, SyncService
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.ports import free_port

SENTINEL = "s3cr3t-PASSWORD-sentinel"
PRE_BALANCE = -1.0  # a value no bridge sends: shows when an account was NOT written


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    await st.open()
    await st.accounts.put_account_documents(
        [
            {
                "account": a,
                "name": v["name"],
                "client_id": "client_alejandro",
                "fund_type": "CORE",
                "password": SENTINEL,
                "target_amount": 6590.31,
                "balance": PRE_BALANCE,
            }
            for a, v in SEED_ACCOUNTS.items()
        ]
    )
    yield st
    await st.close()


MakeService = Callable[..., Awaitable[SyncService]]
SOURCE_OPTIONS = ("use_batch", "concurrency")  # BridgeSource's; the rest are SyncService's


@pytest.fixture
async def make_service(store: Store) -> AsyncIterator[MakeService]:
    clients: list[BridgeClient] = []

    async def make(url: str, *, timeout: float = 2.0, **kw: object) -> SyncService:
        client = BridgeClient(url, timeout=timeout)
        clients.append(client)
        kw.setdefault("health_backoff", 0.01)
        source = BridgeSource(client, **{k: kw.pop(k) for k in SOURCE_OPTIONS if k in kw})  # type: ignore[arg-type]
        svc = SyncService(store, source, **kw)  # type: ignore[arg-type]
        assert await svc.ensure_ready()
        return svc

    yield make
    for c in clients:
        await c.close()


async def test_all_accounts_synced_and_private_fields_untouched(seed, store, make_service):
    bridge, url = seed
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS
    assert (run.accounts_total, run.synced_live, run.failed) == (7, 7, 0)
    assert run.summary_line().startswith("sync complete: 7/7 accounts synced in ")
    # The seed's bridge: 1 health + 1 summary + 7 info calls, no batch.
    assert bridge.requests.count("health") == 1 and bridge.requests.count("summary") == 1
    assert sum(r.startswith("info:") for r in bridge.requests) == 7
    for acc in await store.accounts.get_accounts():
        served = bridge.live_data(acc.account)
        assert acc.balance == served["balance"]
        assert acc.equity == served["equity"]
        assert acc.margin_free == served["margin_free"]
        assert acc.data_source == DataSource.LIVE.value
        assert acc.live_data_at is not None
        assert acc.client_id == "client_alejandro"
        assert acc.name == SEED_ACCOUNTS[acc.account]["name"]
        assert SENTINEL not in repr(acc)
        # Fields the seed's bridge did not send are not invented.
        assert acc.leverage is None and acc.margin_level is None and acc.trade_allowed is None


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("hang", Reason.TIMEOUT),
        ("reset", Reason.CONNECTION),
        ("http_500", Reason.HTTP_STATUS),
        ("not_found", Reason.NOT_FOUND),
        ("broken_json", Reason.INVALID_PAYLOAD),
        ("truncated", Reason.CONNECTION),
        ("nan_balance", Reason.INVALID_PAYLOAD),
        ("string_balance", Reason.INVALID_PAYLOAD),
        ("wrong_login", Reason.ACCOUNT_MISMATCH),
        ("missing_equity", Reason.INVALID_PAYLOAD),
    ],
)
async def test_one_account_failing_is_not_written_and_others_are(seed, store, make_service, fault, reason):
    bridge, url = seed
    bad = 891215
    bridge.behaviour[bad] = fault
    # the hang ends at the request timeout; the healthy accounts must answer within it on a loaded machine
    svc = await make_service(url, timeout=2.0 if fault == "hang" else 10.0)
    run = await svc.run_cycle()
    assert run.result is RunResult.PARTIAL
    assert run.synced_live == 6 and run.failed == 1
    assert run.failures == {str(bad): reason.value}
    stored = {a.account: a for a in await store.accounts.get_accounts()}
    assert stored[bad].balance == PRE_BALANCE  # nothing written, nothing defaulted to 0
    assert stored[bad].data_source is None and stored[bad].live_data_at is None
    for account, rec in stored.items():
        if account != bad:
            assert rec.balance == bridge.live_data(account)["balance"]
    assert svc.fleet.snapshot().failures[(bad, reason)] == 1
    assert svc.fleet.snapshot().accounts[bad].consecutive_failures == 1
    assert (await store.sync_state.get_sync_states())[bad].consecutive_failures == 1


async def test_live_data_missing_falls_back_to_stored_without_resetting_freshness(seed, store, make_service):
    bridge, url = seed
    acc = 886066
    svc = await make_service(url)
    first = await svc.run_cycle()
    assert first.result is RunResult.SUCCESS
    live_at = (await store.accounts.get_account(acc)).live_data_at
    assert live_at is not None

    bridge.behaviour[acc] = "no_live_data"
    bridge.accounts[acc]["stored_balance"] = 12345.67
    run = await svc.run_cycle()
    assert run.result is RunResult.PARTIAL
    assert (run.synced_live, run.synced_stored, run.failed) == (6, 1, 0)
    rec = await store.accounts.get_account(acc)
    assert rec.balance == 12345.67
    assert rec.data_source == DataSource.STORED.value
    assert rec.live_data_at == live_at  # the fallback does not make the data look fresh
    assert rec.updated_at > live_at
    # A stored fallback is not a live success: the failure count is not reset, nor increased.
    assert svc.fleet.snapshot().accounts[acc].consecutive_failures == 0


async def test_bridge_unreachable_skips_cycle_and_changes_nothing(store, make_service):
    port = free_port()  # nothing listens here
    svc = await make_service(f"http://127.0.0.1:{port}", health_retries=3)
    before = await store.accounts.get_accounts()
    run = await svc.run_cycle()
    assert run.result is RunResult.SKIPPED
    assert "bridge unavailable" in (run.error or "")
    assert svc.fleet.status.bridge_up is False
    assert await store.accounts.get_accounts() == before
    assert (await store.runs.list_runs(limit=1))[0].result is RunResult.SKIPPED


async def test_unhealthy_bridge_is_retried_three_times_then_skipped(seed, store, make_service):
    bridge, url = seed
    bridge.healthy = False
    svc = await make_service(url, health_retries=3)
    run = await svc.run_cycle()
    assert run.result is RunResult.SKIPPED
    assert bridge.requests == ["health", "health", "health"]


async def test_health_500_then_recovery(seed, store, make_service):
    bridge, url = seed
    bridge.health_fault = "http_500"
    svc = await make_service(url, health_retries=2)
    assert (await svc.run_cycle()).result is RunResult.SKIPPED
    bridge.health_fault = "ok"
    assert (await svc.run_cycle()).result is RunResult.SUCCESS
    assert svc.fleet.status.bridge_up is True


async def test_broken_account_list_fails_cycle_without_writes(seed, store, make_service):
    bridge, url = seed
    bridge.summary_fault = "broken_json"
    svc = await make_service(url)
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED
    assert (run.error or "").startswith("account list:")
    assert all(a.balance == PRE_BALANCE for a in await store.accounts.get_accounts())


async def test_cycle_deadline_bounds_a_hanging_bridge(seed, store, make_service):
    bridge, url = seed
    for account in bridge.accounts:
        bridge.behaviour[account] = "hang"
    bridge.behaviour[886557] = "ok"
    svc = await make_service(url, timeout=30.0, cycle_deadline=1.0)
    t0 = time.monotonic()
    run = await svc.run_cycle()
    assert time.monotonic() - t0 < 5.0
    assert run.synced_live == 1 and run.failed == 6
    assert set(run.failures.values()) == {Reason.TIMEOUT.value}
    assert (await store.accounts.get_account(886557)).balance == SEED_ACCOUNTS[886557]["balance"]


async def test_cycles_never_overlap(seed, store, make_service):
    bridge, url = seed
    bridge.behaviour[886557] = "hang"
    svc = await make_service(url, timeout=10.0)
    first = asyncio.create_task(svc.run_cycle(trigger="schedule"))
    async with asyncio.timeout(5):
        while svc.fleet.status.running is None or "info:886557" not in bridge.requests:
            await asyncio.sleep(0.01)
    with pytest.raises(AlreadyRunning) as exc:
        await svc.run_cycle(trigger="manual")
    assert exc.value.run.run_id == svc.fleet.status.running.run_id
    bridge.release.set()
    run = await first
    assert run.result in (RunResult.SUCCESS, RunResult.PARTIAL)
    assert svc.fleet.status.running is None


async def test_restart_keeps_consecutive_failures_and_last_sync(seed, tmp_path, store, make_service):
    bridge, url = seed
    bad = 885822
    bridge.behaviour[bad] = "http_500"
    svc = await make_service(url)
    await svc.run_cycle()
    await svc.run_cycle()
    good_live_at = svc.fleet.snapshot().accounts[886557].live_data_at
    assert svc.fleet.snapshot().accounts[bad].consecutive_failures == 2

    # A new process: a new store object on the same file and a new service.
    store2 = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    client = BridgeClient(url, timeout=2.0)
    try:
        svc2 = SyncService(store2, BridgeSource(client), health_backoff=0.01)
        assert await svc2.ensure_ready()
        assert svc2.fleet.snapshot().accounts[bad].consecutive_failures == 2
        assert svc2.fleet.snapshot().accounts[bad].last_reason is Reason.HTTP_STATUS
        assert svc2.fleet.snapshot().accounts[886557].live_data_at == good_live_at
        run = await svc2.run_cycle()
        assert svc2.fleet.snapshot().accounts[bad].consecutive_failures == 3
        bridge.behaviour.pop(bad)
        run = await svc2.run_cycle()
        assert run.result is RunResult.SUCCESS
        assert svc2.fleet.snapshot().accounts[bad].consecutive_failures == 0
    finally:
        await client.close()
        await store2.close()
