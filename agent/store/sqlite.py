"""The embedded default store: one SQLite file with the same behaviour as the MongoDB store.

Each account is a JSON document (so provisioning fields such as client_id, fund_type or credentials
survive untouched) and a sync merges only the synced fields into it with JSON1's json_patch. All sqlite3
work runs on dedicated threads, so the event loop never blocks: writes on one, with its connection;
reads of a file store on another, with a second connection, since in WAL mode a reader never waits for
a writer (an API read must not queue behind a 10,000-account write). A connection is never shared
between threads.

An open connection keeps working on a file that was deleted or replaced, silently writing where no one
will ever read. So every operation first checks that the path still names the file each connection
opened; when it does not, both connections are closed (which lets SQLite remove the old file's -wal and
-shm before anything new exists at the path) and reopened on whatever is at the path now: a new,
empty database with the schema when the file was deleted, the replacement when it was replaced. The
next cycle then writes again, without a restart. (Restoring a backup is still done with the agent
stopped: a replacement's own -wal would be removed when the old connections close.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from agent.models import (
    INSERT_ONLY_FIELDS,
    RECORD_FIELDS,
    VALUE_FIELDS,
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    SyncRun,
)
from agent.store._common import (
    INT64_MAX,
    INT64_MIN,
    STATE_FIELDS,
    check_account,
    check_client_id,
    check_storable,
    iso_ms,
    last_per_account,
    record_from,
    run_from_doc,
    run_to_doc,
    state_from_doc,
    state_to_doc,
)
from agent.store.base import StoreError, StoreRejected

T = TypeVar("T")
log = logging.getLogger("mt5_agent.store")

MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mt5_accounts (
    account   INTEGER PRIMARY KEY,
    doc       TEXT NOT NULL,
    client_id TEXT GENERATED ALWAYS AS (json_extract(doc, '$.client_id')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS mt5_accounts_client_id ON mt5_accounts (client_id);
CREATE TABLE IF NOT EXISTS mt5_sync_state (
    account              INTEGER PRIMARY KEY,
    consecutive_failures INTEGER NOT NULL,
    last_reason          TEXT,
    last_failure_at      TEXT,
    last_attempt_at      TEXT,
    last_live_at         TEXT
);
CREATE TABLE IF NOT EXISTS mt5_sync_runs (
    seq        INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL UNIQUE,
    started_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mt5_sync_runs_newest ON mt5_sync_runs (started_at DESC, seq DESC);
"""

# Inserts the whole new document; on an existing account merges it minus the insert-only fields, so
# INSERT_ONLY_FIELDS and every provisioning field keep their stored values (Mongo's $set/$setOnInsert).
_UPSERT_ACCOUNT = (
    "INSERT INTO mt5_accounts (account, doc) VALUES (?, ?) "
    "ON CONFLICT (account) DO UPDATE SET doc = json_patch(doc, json_remove(excluded.doc, "
    + ", ".join(f"'$.{f}'" for f in INSERT_ONLY_FIELDS)
    + "))"
)
# A missing document is created with only account and client_id; an existing one gets client_id set
# and nothing else touched.
_SET_CLIENT = (
    "INSERT INTO mt5_accounts (account, doc) VALUES (?, json_object('account', ?, 'client_id', ?)) "
    "ON CONFLICT (account) DO UPDATE SET "
    "doc = json_set(doc, '$.client_id', json_extract(excluded.doc, '$.client_id'))"
)
_UNSET_CLIENT = "UPDATE mt5_accounts SET doc = json_remove(doc, '$.client_id') WHERE account = ?"
_PUT_ACCOUNT = """INSERT INTO mt5_accounts (account, doc) VALUES (?, ?)
    ON CONFLICT (account) DO UPDATE SET doc = excluded.doc"""
_UPSERT_STATE = (
    f"INSERT INTO mt5_sync_state ({', '.join(STATE_FIELDS)}) VALUES ({', '.join('?' * len(STATE_FIELDS))}) "
    "ON CONFLICT (account) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS if f != "account")
)
_UPSERT_RUN = (
    "INSERT INTO mt5_sync_runs (run_id, started_at, doc) VALUES (?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at, doc = excluded.doc"
)
# Multi-path json_extract returns a JSON array: only allow-listed fields ever leave the database.
_RECORD_VALUE_FIELDS = tuple(f for f in RECORD_FIELDS if f != "account")
_SELECT_RECORDS = (
    "SELECT account, json_extract(doc, "
    + ", ".join(f"'$.{f}'" for f in _RECORD_VALUE_FIELDS)
    + ") FROM mt5_accounts"
)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_ms(value)
    raise TypeError(f"{type(value).__name__} is not storable")


# One encoder reused: json.dumps with options builds a new encoder per call, which dominates a
# 10,000-account cycle.
_dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode


class _IsoMemo(dict[datetime, str]):
    """A cycle's updates share a few timestamps: format each once."""

    def __missing__(self, dt: datetime) -> str:
        self[dt] = text = iso_ms(dt)
        return text


def _storable(update: AccountUpdate, key: str, value: Any, iso: _IsoMemo) -> Any:
    if isinstance(value, datetime):
        return iso[value]
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        # SQLite's JSON would read it back as a rounded float; refuse it, as BSON does. (check_storable
        # has refused it already: this is the backstop.)
        raise StoreRejected(f"account {update.account}: {key} does not fit in 64 bits", [update.account])
    return value


def _account_doc(update: AccountUpdate, iso: _IsoMemo) -> dict[str, Any]:
    """The document a new account gets (Mongo's upsert of filter + $setOnInsert + $set): the same dict,
    key order included, as `{"account", **update.insert_fields(), **update.set_fields()}` with times as
    ISO text (tests/store/test_sqlite_encoding.py), built without the intermediate dicts: it runs for
    every account of every cycle."""
    doc: dict[str, Any] = {"account": _storable(update, "account", update.account, iso)}
    for key in INSERT_ONLY_FIELDS:
        value = getattr(update, key)
        if value is not None:
            doc[key] = _storable(update, key, value, iso)
    values = update.values
    for key in VALUE_FIELDS:
        value = getattr(values, key)
        if value is not None:
            kind = type(value)
            plain = kind is float or kind is str or kind is bool
            doc[key] = value if plain else _storable(update, key, value, iso)
    doc["updated_at"] = synced = iso[update.synced_at]
    doc["synced_from_vps"] = True
    doc["vps_sync_timestamp"] = synced
    doc["data_source"] = update.data_source.value
    if update.live_data_at is not None:
        doc["live_data_at"] = iso[update.live_data_at]
    return doc


def _state_row(state: AccountSyncState, iso: _IsoMemo) -> tuple[Any, ...]:
    doc = state_to_doc(state)
    return tuple(iso[v] if isinstance(v := doc[f], datetime) else v for f in STATE_FIELDS)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """All or nothing. BEGIN IMMEDIATE takes the write lock up front, so a busy file waits (timeout_ms)
    at the start instead of failing half-way; SQLite may already have rolled back on some errors."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _close_quietly(conn: sqlite3.Connection | None, path: str) -> None:
    """Close a connection whose file may be gone: an error here must not stop the reopen."""
    if conn is None:
        return
    try:
        conn.close()
    except sqlite3.Error as exc:
        log.warning("closing the old SQLite connection to %s failed: %s", path, exc)


class _FileChanged(Exception):
    """A connection no longer matches the file at the store's path (or was closed for a reopen)."""


class SQLiteStore:
    """`Store` on a SQLite file (WAL mode); `path` may be ":memory:" for tests."""

    def __init__(self, path: str, timeout_ms: int = 5000) -> None:
        if not path:
            raise ValueError("SQLite store path is empty")
        # Absolute from the start: file checks must not depend on a later working directory, and
        # errors name the real location.
        self.path = path if path == MEMORY else os.path.abspath(path)
        self._timeout_s = timeout_ms / 1000
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None  # (st_dev, st_ino) the writer connection opened
        self._executor: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None  # reads of a file store (None: on the writer)
        self._rconn: sqlite3.Connection | None = None
        self._rfile_id: tuple[int, int] | None = None  # the file the reader connection opened
        self._reopen_lock = asyncio.Lock()
        self._closed = True

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # -- plumbing ------------------------------------------------------------------------------

    async def _run(self, op: str, fn: Callable[[sqlite3.Connection], T], *, read: bool = False) -> T:
        """Run `fn(conn)` on the store's thread (the reader's for `read`); sqlite3 errors become
        StoreError naming the file. A file deleted or replaced under the store is reopened once and
        the operation run again."""
        for attempt in (1, 2):
            if self._closed or self._executor is None:
                raise StoreError(f"SQLite store {self.path} is closed ({op})")
            reader = read and self._reader is not None
            executor = self._reader if reader else self._executor
            try:
                return await asyncio.get_running_loop().run_in_executor(executor, self._call, op, fn, reader)
            except _FileChanged as exc:
                if attempt == 2:
                    message = f"SQLite database file {self.path} changed again while reopening"
                    raise StoreError(message) from None
                await self._reopen(str(exc))
        raise AssertionError("unreachable")

    def _call(self, op: str, fn: Callable[[sqlite3.Connection], T], reader: bool) -> T:
        """On the connection's own thread."""
        conn = self._rconn if reader else self._conn
        if conn is None:
            if self._closed:
                raise StoreError(f"SQLite store {self.path} is closed ({op})")
            raise _FileChanged("was closed for a reopen")
        try:
            self._check_file(self._rfile_id if reader else self._file_id)
            return fn(conn)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {op} failed on {self.path}: {exc}") from exc
        except OverflowError as exc:  # an integer sqlite3 cannot bind: the data, not the store
            raise StoreRejected(f"SQLite {op} refused a value on {self.path}: {exc}") from None

    def _stat_id(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def _check_file(self, opened: tuple[int, int] | None) -> None:
        """The path must still name the file this connection opened (else _FileChanged: reopen), and
        be writable (else StoreError: an operator's problem, not ours to fix)."""
        if self.path == MEMORY:
            return
        try:
            file_id = self._stat_id()
        except FileNotFoundError:
            raise _FileChanged("was deleted") from None
        except OSError as exc:
            raise StoreError(f"SQLite database file {self.path} cannot be checked: {exc.strerror}") from None
        if file_id != opened:
            raise _FileChanged("was replaced")
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"SQLite database file {self.path} is not writable")

    def _same_file(self) -> bool:
        """Both connections are open on the file now at the path (another task reopened already)."""
        if self._conn is None or (self._reader is not None and self._rconn is None):
            return False
        try:
            file_id = self._stat_id()
        except OSError:
            return False
        return file_id == self._file_id and (self._reader is None or file_id == self._rfile_id)

    async def _reopen(self, what: str) -> None:
        """Close both connections, then open them on what the path names now (creating the file and
        its schema when it is gone). Closing first matters: the last connection to the old file
        removes its -wal and -shm by name, which must not hit a new database's. StoreError when it
        cannot be opened (e.g. the directory is gone): the next operation tries again."""
        async with self._reopen_lock:
            # The executors as they are now: a close() meanwhile shuts them down (and the calls below
            # then fail) rather than leaving None, which would run them on the loop's default executor.
            writer, reader = self._executor, self._reader
            if self._closed or writer is None:
                raise StoreError(f"SQLite store {self.path} is closed")
            if self._same_file():
                return
            loop = asyncio.get_running_loop()
            log.warning("SQLite database file %s %s since it was opened: reopening it", self.path, what)
            try:
                if reader is not None:
                    await loop.run_in_executor(reader, self._close_reader)
                await loop.run_in_executor(writer, self._close_writer)
                await loop.run_in_executor(writer, self._open_writer)
                if reader is not None:
                    await loop.run_in_executor(reader, self._open_reader)
            except RuntimeError:  # an executor shut down by close() while reopening
                raise StoreError(f"SQLite store {self.path} is closed") from None
            log.warning("SQLite store reopened on %s", self.path)

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreError(f"SQLite store directory {parent} does not exist (store path {self.path})")
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != MEMORY and mode != "wal":
                raise StoreError(f"SQLite store {self.path} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose a commit, not corrupt
            conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot initialise SQLite store {self.path}: {exc}") from exc
        except StoreError:
            conn.close()
            raise
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        self._conn = conn
        self._file_id = None if self.path == MEMORY else self._stat_id()

    def _open_reader(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
            conn.execute("PRAGMA query_only=ON")  # this connection only ever reads
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._rconn = conn
        self._rfile_id = self._stat_id()

    def _close_writer(self) -> None:
        conn, self._conn = self._conn, None
        _close_quietly(conn, self.path)

    def _close_reader(self) -> None:
        conn, self._rconn = self._rconn, None
        _close_quietly(conn, self.path)

    # -- Store ---------------------------------------------------------------------------------

    async def open(self) -> None:
        if not self._closed:
            return
        self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_writer)
        if self.path != MEMORY:  # a second connection to ":memory:" would be another database
            self._reader = self._reader or ThreadPoolExecutor(1, thread_name_prefix="sqlite-store-read")
            try:
                await loop.run_in_executor(self._reader, self._open_reader)
            except BaseException:
                await loop.run_in_executor(self._executor, self._close_writer)
                raise
        self._closed = False

    async def close(self) -> None:
        if self._executor is None:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        executor, self._executor = self._executor, None
        reader, self._reader = self._reader, None
        try:
            if reader is not None:
                try:
                    await loop.run_in_executor(reader, self._close_reader)
                finally:
                    reader.shutdown(wait=False)
            await loop.run_in_executor(executor, self._close_writer)
        finally:
            executor.shutdown(wait=False)

    async def ping(self) -> None:
        def ping_sync(conn: sqlite3.Connection) -> None:
            # Reads the schema page and takes the write lock: fails on a read-only or locked-out file.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")

        await self._run("ping", ping_sync)

    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        """One transaction for the whole cycle; the last entry per account wins."""
        updates, states = last_per_account(updates), last_per_account(states)
        if not updates and not states:
            await self.ping()  # nothing to write, but a down store must still say so
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            # Encoding runs here too, off the event loop: it is most of a 10,000-account cycle's cost.
            check_storable(updates, states)
            iso = _IsoMemo()
            account_rows = [(u.account, _dumps(_account_doc(u, iso))) for u in updates]
            state_rows = [_state_row(s, iso) for s in states]
            with _transaction(conn):
                conn.executemany(_UPSERT_ACCOUNT, account_rows)
                conn.executemany(_UPSERT_STATE, state_rows)

        await self._run("write_cycle", write_sync)

    async def record_run(self, run: SyncRun) -> None:
        row = (run.run_id, iso_ms(run.started_at), _dumps(run_to_doc(run)))
        await self._run("record_run", lambda conn: conn.execute(_UPSERT_RUN, row))

    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")

        def list_sync(conn: sqlite3.Connection) -> list[SyncRun]:
            rows = conn.execute(
                "SELECT doc FROM mt5_sync_runs ORDER BY started_at DESC, seq DESC LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [run_from_doc(json.loads(doc)) for (doc,) in rows]

        return await self._run("list_runs", list_sync, read=True)

    async def count_runs(self) -> int:
        return await self._run(
            "count_runs",
            lambda conn: conn.execute("SELECT count(*) FROM mt5_sync_runs").fetchone()[0],
            read=True,
        )

    async def _records(self, op: str, where: str, params: tuple[Any, ...]) -> list[AccountRecord]:
        sql = f"{_SELECT_RECORDS} {where} ORDER BY account"

        def read_sync(conn: sqlite3.Connection) -> list[AccountRecord]:
            return [
                record_from(account, dict(zip(_RECORD_VALUE_FIELDS, json.loads(values), strict=True)))
                for account, values in conn.execute(sql, params)
            ]

        return await self._run(op, read_sync, read=True)

    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        if client_id is None:
            return await self._records("get_accounts", "", ())
        return await self._records("get_accounts", "WHERE client_id = ?", (client_id,))

    async def get_account(self, account: int) -> AccountRecord | None:
        records = await self._records("get_account", "WHERE account = ?", (account,))
        return records[0] if records else None

    async def get_sync_states(self) -> dict[int, AccountSyncState]:
        def read_sync(conn: sqlite3.Connection) -> dict[int, AccountSyncState]:
            cur = conn.execute(f"SELECT {', '.join(STATE_FIELDS)} FROM mt5_sync_state ORDER BY account")
            return {row[0]: state_from_doc(dict(zip(STATE_FIELDS, row, strict=True))) for row in cur}

        return await self._run("get_sync_states", read_sync, read=True)

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        rows = []
        for doc in docs:
            account = doc.get("account")
            if not isinstance(account, int) or isinstance(account, bool):
                raise ValueError(f"account document needs an integer 'account', got {account!r}")
            try:
                rows.append((account, _dumps({k: v for k, v in doc.items() if k != "_id"})))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"account {account} document is not storable: {exc}") from None
        if not rows:
            return

        def put_sync(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(_PUT_ACCOUNT, rows)

        await self._run("put_account_documents", put_sync)

    async def set_client(self, account: int, client_id: str | None) -> None:
        check_account(account)
        check_client_id(client_id)

        def set_sync(conn: sqlite3.Connection) -> None:
            if client_id is None:
                conn.execute(_UNSET_CLIENT, (account,))
            else:
                conn.execute(_SET_CLIENT, (account, account, client_id))

        await self._run("set_client", set_sync)
