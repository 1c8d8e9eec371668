"""The runs contract (`store.runs`, `mt5_sync_runs`): recorded, replaced by run_id, listed newest first."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from agent.domain.accounts import Reason
from agent.domain.runs import RunResult, SyncRun
from agent.store.base import Store

from ..conftest import Backend
from ..factories import T0, ms
from .expect import MINUTE


async def test_runs_are_listed_newest_first_with_paging(store: Store) -> None:
    runs = [SyncRun(f"run-{i}", started_at=T0 + i * MINUTE, result=RunResult.SUCCESS) for i in range(7)]
    for run in random.Random(4).sample(runs, len(runs)):
        await store.runs.record_run(run)

    assert await store.runs.count_runs() == 7

    async def ids(**kw: int) -> list[str]:
        return [r.run_id for r in await store.runs.list_runs(**kw)]

    assert await ids() == [f"run-{i}" for i in range(6, -1, -1)]
    assert await ids(limit=3) == ["run-6", "run-5", "run-4"]
    assert await ids(limit=3, offset=3) == ["run-3", "run-2", "run-1"]
    assert await ids(limit=3, offset=6) == ["run-0"]
    assert await ids(offset=10) == []
    assert await ids(limit=0) == []


async def test_a_run_round_trips(store: Store) -> None:
    run = SyncRun(
        run_id="0b7c7c4e",
        started_at=T0.replace(microsecond=987654),
        trigger="manual",
        finished_at=T0 + timedelta(seconds=2, microseconds=345678),
        duration_seconds=2.358024,
        result=RunResult.PARTIAL,
        accounts_total=7,
        synced_live=5,
        synced_stored=1,
        failed=1,
        failures={"891215": Reason.TIMEOUT.value},
        error="1 account timed out",
        bridge_batch=True,
    )
    await store.runs.record_run(run)

    [got] = await store.runs.list_runs()
    assert run.finished_at is not None
    assert got == SyncRun(
        **{**vars(run), "started_at": ms(run.started_at), "finished_at": ms(run.finished_at)}
    )
    assert got.result is RunResult.PARTIAL


async def test_recording_a_run_again_replaces_it(store: Store) -> None:
    await store.runs.record_run(SyncRun("r1", started_at=T0))
    await store.runs.record_run(
        SyncRun("r1", started_at=T0, finished_at=T0 + MINUTE, result=RunResult.FAILED)
    )

    assert await store.runs.count_runs() == 1
    [got] = await store.runs.list_runs()
    assert (got.result, got.finished_at) == (RunResult.FAILED, T0 + MINUTE)


async def test_timestamps_are_aware_utc_even_from_naive_input(store: Store) -> None:
    naive = datetime(2025, 3, 1, 8, 30, 15, 500999)  # taken as UTC, as pymongo does
    await store.runs.record_run(SyncRun("naive", started_at=naive))
    [got] = await store.runs.list_runs()
    assert got.started_at == datetime(2025, 3, 1, 8, 30, 15, 500000, tzinfo=UTC)


async def test_a_run_document_from_another_version_reads_back(store: Store, backend: Backend) -> None:
    """Stored runs outlive the code: fields it no longer knows are ignored, and a value outside a closed
    set (result, fetch mode) reads as none, never as a value its type does not allow."""
    backend.put_raw_run(
        {
            "run_id": "old",
            "started_at": T0,
            "result": "exploded",
            "fetch_mode": "telepathy",
            "failures": {"7": "timeout"},
            "retired_field": {"x": 1},
        }
    )
    backend.put_raw_run({"run_id": "odd", "started_at": T0 + MINUTE, "result": {"not": "hashable"}})
    odd, old = await store.runs.list_runs()
    assert (old.run_id, old.started_at, old.result, old.fetch_mode) == ("old", T0, None, None)
    assert old.failures == {"7": "timeout"}
    assert (odd.run_id, odd.result) == ("odd", None)
