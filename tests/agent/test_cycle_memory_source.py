"""The sync cycle over an in-memory source (no HTTP): outcomes, reasons, fetch modes, the deadline,
pruning, and the fleet read model it applies (immutable snapshots, a version that moves)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.domain.accounts import REASONS, DataSource, Reason
from agent.domain.freshness import State, Thresholds, classify
from agent.domain.runs import RunResult, SyncRun
from agent.sources.base import Source, SourceError, SourceHealth
from agent.sources.memory import MemorySource
from agent.store import open_store
from agent.store.base import Store
from agent.sync.cycle import SyncService
from agent.sync.fleet import AccountState, Fleet

A, B, C = 1001, 1002, 1003

MakeService = Callable[..., Awaitable[SyncService]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'agent.db'}")
    yield s
    await s.close()


@pytest.fixture
def source() -> MemorySource:
    src = MemorySource()
    for account in (A, B, C):
        src.set(account, balance=float(account), equity=float(account), currency="USD", name=f"n{account}")
    return src


@pytest.fixture
async def make_service(store: Store, source: MemorySource) -> MakeService:
    async def make(**kw: Any) -> SyncService:
        kw.setdefault("health_backoff", 0.0)
        kw.setdefault("health_retries", 1)
        svc = SyncService(store, kw.pop("source", source), **kw)
        assert await svc.ensure_ready()
        return svc

    return make


def test_memory_source_is_a_source(source: MemorySource) -> None:
    assert isinstance(source, Source)


async def test_success_writes_every_account_live(make_service: MakeService, store: Store) -> None:
    svc = await make_service()
    run = await svc.run_cycle()
    assert run.result is RunResult.SUCCESS
    assert (run.accounts_total, run.synced_live, run.synced_stored, run.failed) == (3, 3, 0, 0)
    assert run.source == "memory" and run.fetch_mode == "batch" and run.bridge_batch is True
    snap = svc.fleet.snapshot()
    assert list(snap.accounts) == [A, B, C]
    assert all(
        a.data_source == DataSource.LIVE and a.live_data_at is not None for a in snap.accounts.values()
    )
    values = snap.accounts[A].values
    assert values is not None and values.balance == float(A)
    assert snap.accounts[A].name == f"n{A}"
    records = {r.account: r for r in await store.accounts.get_accounts()}
    assert set(records) == {A, B, C}
    # The fleet holds exactly what the store holds.
    for account, r in records.items():
        st = snap.accounts[account]
        assert (r.balance, r.equity, r.currency, r.live_data_at, r.updated_at, r.data_source) == (
            st.values.balance if st.values else None,
            st.values.equity if st.values else None,
            st.currency,
            st.live_data_at,
            st.updated_at,
            st.data_source,
        )
    status = svc.fleet.status
    assert status.bridge_up is True and status.store_up is True and status.terminal_up is True
    assert status.runs[RunResult.SUCCESS] == 1 and status.last_run is run
    assert status.last_success_at == run.finished_at and status.running is None


async def test_partial_and_failures_counted_by_reason(
    make_service: MakeService, source: MemorySource
) -> None:
    svc = await make_service()
    source.fail(B, Reason.LOGIN_FAILED)
    source.fail(C, Reason.NO_LIVE_DATA)
    run = await svc.run_cycle()
    assert run.result is RunResult.PARTIAL
    assert run.failures == {str(B): "login_failed", str(C): "no_live_data"}
    snap = svc.fleet.snapshot()
    assert snap.failures[(B, Reason.LOGIN_FAILED)] == 1
    assert snap.failures[(C, Reason.NO_LIVE_DATA)] == 1
    assert snap.failures[(A, Reason.TIMEOUT)] == 0  # a missing key reads 0
    assert snap.accounts[B].consecutive_failures == 1 and snap.accounts[B].last_reason is Reason.LOGIN_FAILED
    assert snap.accounts[A].consecutive_failures == 0

    for reason in REASONS:
        if reason is Reason.STORE:
            continue  # only the store gives that one
        source.fail(B, reason)
        await svc.run_cycle()
        assert svc.fleet.snapshot().accounts[B].last_reason is reason
    assert svc.fleet.snapshot().accounts[B].consecutive_failures == len(REASONS)  # 1 + every reason but store

    source.set(B, balance=5.0)
    await svc.run_cycle()
    assert svc.fleet.snapshot().accounts[B].consecutive_failures == 0


async def test_all_failed_is_failed(make_service: MakeService, source: MemorySource) -> None:
    svc = await make_service()
    for account in (A, B, C):
        source.fail(account, Reason.CONNECTION)
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED and run.error == "no account could be synced"
    assert svc.fleet.status.last_success_at is None


async def test_stored_fallback_keeps_freshness(make_service: MakeService, source: MemorySource) -> None:
    svc = await make_service()
    await svc.run_cycle()
    live_at = svc.fleet.snapshot().accounts[A].live_data_at
    source.set(A, balance=7.0, live=False)
    run = await svc.run_cycle()
    assert run.result is RunResult.PARTIAL and (run.synced_live, run.synced_stored) == (2, 1)
    a = svc.fleet.snapshot().accounts[A]
    assert a.data_source == DataSource.STORED and a.live_data_at == live_at
    assert a.values is not None and a.values.balance == 7.0
    assert a.values.currency == "USD"  # a field the source did not send keeps its value (merge rule)
    # Stored data only for every account: the terminal is down, the run is failed, success does not move.
    last_success = svc.fleet.status.last_success_at
    for account in (A, B, C):
        source.set(account, balance=1.0, live=False)
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED and "stored data only" in (run.error or "")
    assert svc.fleet.status.terminal_up is False and svc.fleet.status.bridge_up is True
    assert svc.fleet.status.last_success_at == last_success


@pytest.mark.parametrize("batch", [True, False])
async def test_fetch_mode_is_recorded(make_service: MakeService, source: MemorySource, batch: bool) -> None:
    source.batch = batch
    svc = await make_service()
    run = await svc.run_cycle()
    assert run.fetch_mode == ("batch" if batch else "per_account")
    assert run.bridge_batch is batch
    stored = await svc.store.runs.list_runs(limit=1)
    assert stored[0].bridge_batch is batch
    assert (stored[0].source, stored[0].fetch_mode) == (run.source, run.fetch_mode)


async def test_deadline_fails_slow_accounts_with_timeout(
    make_service: MakeService, source: MemorySource
) -> None:
    source.accounts[C].latency = 5.0
    svc = await make_service(cycle_deadline=0.2)
    started = asyncio.get_running_loop().time()
    run = await svc.run_cycle()
    assert asyncio.get_running_loop().time() - started < 2.0
    assert run.result is RunResult.PARTIAL
    assert run.failures == {str(C): "timeout"}
    assert svc.fleet.snapshot().failures[(C, Reason.TIMEOUT)] == 1


async def test_source_down_skips_and_listing_failure_decides_bridge_up(
    make_service: MakeService, source: MemorySource
) -> None:
    svc = await make_service()
    await svc.run_cycle()
    version = svc.fleet.version
    source.down = SourceError(Reason.CONNECTION, "refused")
    run = await svc.run_cycle()
    assert run.result is RunResult.SKIPPED and run.error == "bridge unavailable: refused"
    assert svc.fleet.status.bridge_up is False
    assert svc.fleet.version == version  # nothing changed
    source.down = None
    source.listing_error = SourceError(Reason.INVALID_PAYLOAD, "garbage", reachable=True)
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED and svc.fleet.status.bridge_up is True
    source.health_status = SourceHealth(status="unhealthy", available=True)
    run = await svc.run_cycle()
    assert run.result is RunResult.SKIPPED and "unhealthy" in (run.error or "")


async def test_invalid_entries_counted_by_endpoint(make_service: MakeService, source: MemorySource) -> None:
    source.invalid_listing, source.invalid_reads = 2, 3
    svc = await make_service()
    await svc.run_cycle()
    assert dict(svc.fleet.status.invalid_entries) == {"summary": 2, "live": 3}


async def test_pruned_after_three_listings(make_service: MakeService, source: MemorySource) -> None:
    svc = await make_service()
    source.fail(C, Reason.HTTP_STATUS)
    await svc.run_cycle()
    source.remove(C)
    for _ in range(2):
        await svc.run_cycle()
        assert C in svc.fleet.snapshot().accounts
    await svc.run_cycle()
    snap = svc.fleet.snapshot()
    assert C not in snap.accounts and not any(account == C for account, _ in snap.failures)
    assert svc.fleet.status.pruned_total == 1
    source.set(C)
    await svc.run_cycle()
    assert list(svc.fleet.snapshot().accounts) == [A, B, C]  # back, in account order


async def test_snapshots_are_immutable_and_versioned(make_service: MakeService, source: MemorySource) -> None:
    svc = await make_service()
    fleet = svc.fleet
    before = fleet.snapshot()
    await svc.run_cycle()
    after = fleet.snapshot()
    assert after.version > before.version
    assert before.accounts == {} or set(before.accounts) <= {A, B, C}
    assert fleet.snapshot() is after  # no change, same snapshot
    with pytest.raises(TypeError):
        after.accounts[A] = AccountState(A)  # type: ignore[index]
    with pytest.raises(TypeError):
        after.failures[(A, Reason.TIMEOUT)] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.accounts[A].name = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.version = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fleet.status.bridge_up = False  # type: ignore[misc]
    held = after.accounts[A]
    source.set(A, balance=42.0)
    await svc.run_cycle()
    newer = fleet.snapshot()
    assert newer.version > after.version
    assert after.accounts[A] is held and held.values is not None and held.values.balance == float(A)
    values = newer.accounts[A].values
    assert values is not None and values.balance == 42.0
    # Status changes (a probe) do not move the version.
    version = fleet.version
    fleet.update_status(bridge_up=False)
    assert fleet.version == version


async def test_client_assignment_loaded_and_set(store: Store, make_service: MakeService) -> None:
    svc = await make_service()
    await svc.run_cycle()
    await store.accounts.set_client(A, "client-1")
    svc.fleet.set_client(A, "client-1")
    assert svc.fleet.snapshot().accounts[A].client_id == "client-1"
    svc.fleet.set_client(9999, "client-2")  # not in the fleet yet: applied when it arrives
    assert 9999 not in svc.fleet.snapshot().accounts
    # A new process loads the assignment from the store.
    fresh = Fleet()
    svc2 = SyncService(store, MemorySource(), fleet=fresh)
    assert await svc2.load_state()
    assert fresh.snapshot().accounts[A].client_id == "client-1"
    assert fresh.snapshot().accounts[B].client_id is None
    assert fresh.loaded


async def test_documents_written_by_another_process_join_at_the_next_cycle(
    store: Store, make_service: MakeService
) -> None:
    """The seed's backend provisions accounts and assigns clients in the same store: the read model picks
    them up at the next cycle, without a restart, and publishes only when something changed."""
    svc = await make_service(refresh_interval=0.0)
    await svc.run_cycle()
    version = svc.fleet.version
    await svc.run_cycle()
    assert svc.fleet.version == version + 1  # the cycle's own apply; the unchanged re-read added nothing
    await store.accounts.put_account_documents([{"account": 7777, "client_id": "client-9", "name": "x"}])
    await store.accounts.set_client(A, "client-1")
    await svc.run_cycle()
    snap = svc.fleet.snapshot()
    assert snap.accounts[7777].client_id == "client-9" and snap.accounts[7777].values is None
    assert snap.accounts[A].client_id == "client-1"
    assert snap.accounts[A].values is not None  # what the cycle learnt is kept
    # Not listed by the source: pruned after three listings, and the re-read does not bring it back.
    for _ in range(3):
        await svc.run_cycle()
    assert 7777 not in svc.fleet.snapshot().accounts
    await svc.run_cycle()
    assert 7777 not in svc.fleet.snapshot().accounts


async def test_the_re_read_happens_at_most_once_per_interval(store: Store, make_service: MakeService) -> None:
    svc = await make_service(refresh_interval=3600.0)
    await svc.run_cycle()
    await store.accounts.put_account_documents([{"account": 7777, "client_id": "client-9"}])
    await svc.run_cycle()
    assert 7777 not in svc.fleet.snapshot().accounts  # not yet: the interval has not passed
    svc.refresh_interval = 0.0
    await svc.run_cycle()
    assert svc.fleet.snapshot().accounts[7777].client_id == "client-9"


async def test_restart_keeps_counts(store: Store, make_service: MakeService, source: MemorySource) -> None:
    svc = await make_service()
    source.fail(B, Reason.TIMEOUT)
    await svc.run_cycle()
    await svc.run_cycle()
    svc2 = SyncService(store, source)
    assert await svc2.ensure_ready()
    b = svc2.fleet.snapshot().accounts[B]
    assert b.consecutive_failures == 2 and b.last_reason is Reason.TIMEOUT and b.has_sync_state
    assert svc2.fleet.snapshot().accounts[A].live_data_at == svc.fleet.snapshot().accounts[A].live_data_at


async def test_store_down_fails_every_account_with_store(
    make_service: MakeService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.store.base import StoreError

    svc = await make_service()

    async def down(*_a: object, **_k: object) -> None:
        raise StoreError("down")

    monkeypatch.setattr(svc.store, "write_cycle", down)
    run = await svc.run_cycle()
    assert run.result is RunResult.FAILED and run.failed == 3
    snap = svc.fleet.snapshot()
    assert all(snap.failures[(a, Reason.STORE)] == 1 for a in (A, B, C))
    assert all(a.values is None for a in snap.accounts.values())  # nothing written, nothing shown
    assert svc.fleet.status.store_up is False


async def test_store_rejecting_some_accounts_fails_only_those(
    make_service: MakeService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.store.errors import StoreRejected

    svc = await make_service()
    real = svc.store.write_cycle
    calls: list[set[int]] = []

    async def picky(updates: Any, states: Any) -> None:
        calls.append({u.account for u in updates})
        if B in calls[-1]:
            raise StoreRejected("cannot hold it", accounts=[B])
        await real(updates, states)

    monkeypatch.setattr(svc.store, "write_cycle", picky)
    run = await svc.run_cycle()
    assert calls == [{A, B, C}, {A, C}]
    assert run.result is RunResult.PARTIAL and run.failures == {str(B): "invalid_payload"}
    snap = svc.fleet.snapshot()
    assert snap.failures[(B, Reason.INVALID_PAYLOAD)] == 1 and snap.accounts[B].values is None
    assert snap.accounts[A].values is not None and svc.fleet.status.store_up is True
    assert {r.account for r in await store.accounts.get_accounts()} == {A, C}


def test_classify_is_the_one_freshness_function() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    t = Thresholds()
    assert classify(None, now, t) is State.CRITICAL
    assert classify(now, now, t) is State.FRESH
    assert classify(now + timedelta(seconds=30), now, t) is State.FRESH  # skew clamps to 0
    assert classify(now - timedelta(seconds=300), now, t) is State.ACCEPTABLE
    assert classify(now - timedelta(seconds=600), now, t) is State.DEGRADED
    assert classify(now - timedelta(seconds=900), now, t) is State.CRITICAL


def test_bridge_batch_derives_from_fetch_mode() -> None:
    run = SyncRun(run_id="r", started_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert run.fetch_mode is None and run.bridge_batch is False
    run.set_fetch("bridge", "per_account")
    assert run.bridge_batch is False and run.source == "bridge"
    run.set_fetch("bridge", "batch")
    assert run.bridge_batch is True
    old = SyncRun(run_id="o", started_at=run.started_at, bridge_batch=True)  # stored before fetch_mode
    assert old.fetch_mode == "batch"


def test_the_cycle_sees_only_sources_and_domain_types() -> None:
    """agent/sync imports no bridge module (the bridge lives behind the Source protocol)."""
    import ast

    root = Path(__file__).resolve().parents[2] / "agent" / "sync"
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith(
                    ("agent.sources.bridge", "agent.bridge_client", "agent.payloads")
                ), f"{path.name} imports {name}"


def test_replace_publishes_a_new_ordered_version() -> None:
    fleet = Fleet()
    snap = fleet.replace([AccountState(C), AccountState(A)], {(A, Reason.TIMEOUT): 2})
    assert snap is fleet.snapshot() and snap.version == 1
    assert list(snap.accounts) == [A, C]
    assert snap.failures[(A, Reason.TIMEOUT)] == 2 and snap.failures[(C, Reason.TIMEOUT)] == 0
    assert fleet.replace(snap.accounts.values(), snap.failures).version == 2
