"""SQLite-only behaviour: transactions, WAL, the file disappearing under the store, speed, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from agent.domain.accounts import AccountSyncState, Reason
from agent.store import open_store
from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.sqlite import SQLiteStore

from .factories import T0, update

T = TypeVar("T")


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "store.db"))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def _add_failing_trigger(path: str, account: int) -> None:
    """Another connection installs a trigger that aborts the state write for `account`: a real failure
    in the middle of the store's transaction, after the account rows were already written."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            f"CREATE TRIGGER fail_state BEFORE INSERT ON mt5_sync_state WHEN NEW.account = {account} "
            "BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
        )
        conn.commit()
    finally:
        conn.close()


async def test_write_cycle_is_all_or_nothing(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.write_cycle(
        [update(1, 10.0), update(2, 20.0)], [AccountSyncState(1, 1, Reason.TIMEOUT)]
    )
    before = (await sqlite_store.accounts.get_accounts(), await sqlite_store.sync_state.get_sync_states())
    _add_failing_trigger(sqlite_store.path, account=3)

    with pytest.raises(StoreError, match="forced failure"):
        await sqlite_store.write_cycle(
            [update(1, 11.0, at=T0), update(2, 21.0), update(4, 40.0)],
            [AccountSyncState(1, 0), AccountSyncState(3, 1, Reason.CONNECTION)],
        )

    assert (
        await sqlite_store.accounts.get_accounts(),
        await sqlite_store.sync_state.get_sync_states(),
    ) == before
    # The connection is usable again: no transaction was left open.
    await sqlite_store.write_cycle([update(4, 40.0)], [])
    assert [r.account for r in await sqlite_store.accounts.get_accounts()] == [1, 2, 4]


async def test_the_database_runs_in_wal_mode(sqlite_store: SQLiteStore) -> None:
    conn = sqlite3.connect(sqlite_store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "store.db"
    s = SQLiteStore(str(path))
    with pytest.raises(StoreError, match="does not exist") as err:
        await s.open()
    assert str(path.parent) in str(err.value)
    assert not path.parent.exists()  # not created behind the operator's back
    await s.close()


async def test_a_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    s = SQLiteStore(str(tmp_path / "afile" / "store.db"))
    with pytest.raises(StoreError, match="afile"):
        await s.open()
    await s.close()


def _remove_database(path: str) -> None:
    """What an operator's `rm mt5-agent.db*` does: the file and its WAL companions."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def _accounts_in_file(path: str) -> list[int]:
    """Read the file behind the store's back, with a connection of our own."""
    conn = sqlite3.connect(path)
    try:
        return [a for (a,) in conn.execute("SELECT account FROM mt5_accounts ORDER BY account")]
    finally:
        conn.close()


async def test_a_deleted_database_file_is_recreated_and_written_again(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 finding 14: before, every later operation failed until a restart (mt5_store_up 0)."""
    await sqlite_store.write_cycle([update(1)], [AccountSyncState(1, 2, Reason.TIMEOUT)])
    _remove_database(sqlite_store.path)

    await sqlite_store.write_cycle([update(2, 20.0)], [AccountSyncState(2)])

    assert _accounts_in_file(sqlite_store.path) == [2]  # a new file at the path, with the schema
    assert [(r.account, r.balance) for r in await sqlite_store.accounts.get_accounts()] == [(2, 20.0)]
    assert list(await sqlite_store.sync_state.get_sync_states()) == [2]
    await sqlite_store.ping()
    assert any("was deleted" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


async def test_a_read_after_the_file_was_deleted_reopens_too(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.write_cycle([update(1)], [])
    _remove_database(sqlite_store.path)

    assert await sqlite_store.accounts.get_accounts() == []  # the reader noticed first: an empty new database
    await sqlite_store.write_cycle([update(3)], [])
    assert [r.account for r in await sqlite_store.accounts.get_accounts()] == [3]
    assert _accounts_in_file(sqlite_store.path) == [3]


async def test_a_replaced_database_file_is_reopened(sqlite_store: SQLiteStore, tmp_path: Path) -> None:
    await sqlite_store.write_cycle([update(1)], [])
    other = SQLiteStore(str(tmp_path / "other.db"))  # e.g. a copy restored by an operator
    await other.open()
    await other.write_cycle([update(7, 70.0)], [])
    await other.close()
    _remove_database(sqlite_store.path)
    os.rename(other.path, sqlite_store.path)

    await sqlite_store.ping()
    assert [(r.account, r.balance) for r in await sqlite_store.accounts.get_accounts()] == [(7, 70.0)]
    await sqlite_store.write_cycle([update(8)], [])
    assert _accounts_in_file(sqlite_store.path) == [7, 8]


async def test_concurrent_operations_after_a_deletion_reopen_once(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.write_cycle([update(1)], [])
    _remove_database(sqlite_store.path)
    await asyncio.gather(
        *(sqlite_store.write_cycle([update(10 + i)], []) for i in range(5)),
        *(sqlite_store.accounts.get_accounts() for _ in range(5)),
        sqlite_store.ping(),
    )
    assert _accounts_in_file(sqlite_store.path) == [10, 11, 12, 13, 14]


async def test_a_removed_directory_is_a_store_error_until_it_is_back(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    s = SQLiteStore(str(directory / "store.db"))
    await s.open()
    try:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()
        with pytest.raises(StoreError, match=str(directory)):
            await s.ping()
        with pytest.raises(StoreError):
            await s.write_cycle([update(1)], [])
        with pytest.raises(StoreError):
            await s.accounts.get_accounts()
        assert not directory.exists()  # never created behind the operator's back

        directory.mkdir()  # the operator fixes it: the store recovers by itself
        await s.write_cycle([update(2)], [])
        assert [r.account for r in await s.accounts.get_accounts()] == [2]
    finally:
        await s.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
async def test_an_unwritable_database_file_is_a_store_error(sqlite_store: SQLiteStore) -> None:
    os.chmod(sqlite_store.path, 0o444)
    try:
        with pytest.raises(StoreError, match="not writable"):
            await sqlite_store.ping()
    finally:
        os.chmod(sqlite_store.path, 0o644)


async def test_close_then_open_again(sqlite_store: SQLiteStore) -> None:
    await sqlite_store.write_cycle([update(1)], [])
    await sqlite_store.close()
    with pytest.raises(StoreError, match="closed"):
        await sqlite_store.ping()
    await sqlite_store.open()
    assert [r.account for r in await sqlite_store.accounts.get_accounts()] == [1]


async def _timed(call: Awaitable[T]) -> tuple[T, float, float]:
    """(result, wall seconds, process CPU seconds). CPU time covers the store's worker thread and, unlike
    wall time, does not swell when a shared CI machine is busy."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = await call
    return result, time.perf_counter() - wall, time.process_time() - cpu


async def test_ten_thousand_accounts_are_fast(sqlite_store: SQLiteStore) -> None:
    n = 10_000
    ups = [update(100_000 + i, float(i), name=f"acct {i}") for i in range(n)]
    states = [AccountSyncState(u.account, 1, Reason.TIMEOUT) for u in ups]

    timings = {
        "insert": await _timed(sqlite_store.write_cycle(ups, states)),
        "update": await _timed(sqlite_store.write_cycle(ups, states)),  # steady state: merges
    }
    timings["read"] = read = await _timed(sqlite_store.accounts.get_accounts())

    records = read[0]
    assert len(records) == n and records[-1].balance == float(n - 1)
    report = {k: f"wall {w:.3f}s cpu {c:.3f}s" for k, (_, w, c) in timings.items()}
    assert all(cpu < 1.0 for _, _, cpu in timings.values()), report
    assert all(wall < 3.0 for _, wall, _ in timings.values()), report  # e.g. no per-row commits/fsyncs


async def test_blocking_work_stays_off_the_event_loop(sqlite_store: SQLiteStore) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await sqlite_store.write_cycle([update(i) for i in range(5000)], [])
    during = ticks - before
    stop.set()
    await task
    assert during > 0  # the loop kept running while SQLite worked


async def test_concurrent_calls_are_serialised_safely(sqlite_store: SQLiteStore) -> None:
    await asyncio.gather(
        *(sqlite_store.write_cycle([update(i * 10 + k) for k in range(10)], []) for i in range(20)),
        *(sqlite_store.accounts.get_accounts() for _ in range(10)),
    )
    assert [r.account for r in await sqlite_store.accounts.get_accounts()] == list(range(200))


async def test_in_memory_store_through_open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_store("sqlite:///:memory:")
    await s.open()
    try:
        await s.write_cycle([update(1)], [])
        await s.ping()
        assert [r.account for r in await s.accounts.get_accounts()] == [1]
    finally:
        await s.close()
    assert os.listdir(tmp_path) == []  # nothing written to disk


# -- issue 11: typed errors ------------------------------------------------------------------------


async def test_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "no" / "store.db"))
    with pytest.raises(StoreConfigError, match="does not exist"):
        await s.open()
    await s.close()


async def test_a_closed_or_unwritable_store_is_unavailable(sqlite_store: SQLiteStore) -> None:
    if os.geteuid() != 0:
        os.chmod(sqlite_store.path, 0o444)
        try:
            with pytest.raises(StoreUnavailable, match="not writable"):
                await sqlite_store.ping()
        finally:
            os.chmod(sqlite_store.path, 0o644)
    await sqlite_store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await sqlite_store.accounts.get_accounts()


async def test_a_locked_file_is_unavailable_and_a_failed_statement_is_not(tmp_path: Path) -> None:
    """SQLite's own result code decides: SQLITE_BUSY (another process holds the write lock past the
    timeout) is StoreUnavailable; a statement the database refuses (a trigger) is a plain StoreError."""
    s = SQLiteStore(str(tmp_path / "store.db"), timeout_ms=50)
    await s.open()
    other = sqlite3.connect(s.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable, match="locked"):
            await s.write_cycle([update(1)], [])
        other.execute("ROLLBACK")
        _add_failing_trigger(s.path, account=3)
        with pytest.raises(StoreError, match="forced failure") as err:
            await s.write_cycle([update(1)], [AccountSyncState(3)])
        assert not isinstance(err.value, (StoreUnavailable, StoreRejected, StoreConfigError))
    finally:
        other.close()
        await s.close()
