"""The SQLite store's connections: one file in WAL mode, every concern's tables in it.

All sqlite3 work runs on dedicated threads, so the event loop never blocks: writes on one, with its
connection; reads of a file store on another, with a second connection, since in WAL mode a reader never
waits for a writer (an API read must not queue behind a 10,000-account write). A connection is never
shared between threads.

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
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.observe import OperationObserver

T = TypeVar("T")
log = logging.getLogger("mt5_agent.store")

MEMORY = ":memory:"

# Primary result codes (sqlite3 errors' `sqlite_errorcode & 0xFF`) that mean the file cannot be used right
# now rather than that the statement failed: PERM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, NOTADB.
_UNAVAILABLE_CODES = frozenset({3, 5, 6, 8, 10, 13, 14, 26})


def store_error(message: str, exc: sqlite3.Error) -> StoreError:
    """The typed error for a sqlite3 error: StoreUnavailable when the file cannot be used now."""
    code = getattr(exc, "sqlite_errorcode", None)
    kind = StoreUnavailable if code is not None and code & 0xFF in _UNAVAILABLE_CODES else StoreError
    return kind(message)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
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


class SQLiteConnection:
    """The two connections (writer, reader) to one SQLite file in WAL mode, each on its own thread, with
    the schema every concern declares; `path` may be ":memory:" for tests (one connection)."""

    def __init__(self, path: str, timeout_ms: int = 5000, schema: str = "") -> None:
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
        self._schema = schema
        self._closed = True
        self.observe: OperationObserver | None = None  # see agent.store.observe

    async def run(self, op: str, fn: Callable[[sqlite3.Connection], T], *, read: bool = False) -> T:
        """Run `fn(conn)` on the store's thread (the reader's for `read`); sqlite3 errors become
        StoreError naming the file. A file deleted or replaced under the store is reopened once and
        the operation run again."""
        for attempt in (1, 2):
            if self._closed or self._executor is None:
                raise StoreUnavailable(f"SQLite store {self.path} is closed ({op})")
            reader = read and self._reader is not None
            executor = self._reader if reader else self._executor
            try:
                return await asyncio.get_running_loop().run_in_executor(executor, self._call, op, fn, reader)
            except _FileChanged as exc:
                if attempt == 2:
                    message = f"SQLite database file {self.path} changed again while reopening"
                    raise StoreUnavailable(message) from None
                await self._reopen(str(exc))
        raise AssertionError("unreachable")

    def _call(self, op: str, fn: Callable[[sqlite3.Connection], T], reader: bool) -> T:
        """On the connection's own thread."""
        conn = self._rconn if reader else self._conn
        if conn is None:
            if self._closed:
                raise StoreUnavailable(f"SQLite store {self.path} is closed ({op})")
            raise _FileChanged("was closed for a reopen")
        try:
            self._check_file(self._rfile_id if reader else self._file_id)
            return fn(conn)
        except sqlite3.Error as exc:
            raise store_error(f"SQLite {op} failed on {self.path}: {exc}", exc) from exc
        except OverflowError as exc:  # an integer sqlite3 cannot bind: the data, not the store
            raise StoreRejected(f"SQLite {op} refused a value on {self.path}: {exc}") from None

    def _stat_id(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_dev, st.st_ino

    def _check_file(self, opened: tuple[int, int] | None) -> None:
        """The path must still name the file this connection opened (else _FileChanged: reopen), and
        be writable (else StoreUnavailable: an operator's problem, not ours to fix)."""
        if self.path == MEMORY:
            return
        try:
            file_id = self._stat_id()
        except FileNotFoundError:
            raise _FileChanged("was deleted") from None
        except OSError as exc:
            raise StoreUnavailable(
                f"SQLite database file {self.path} cannot be checked: {exc.strerror}"
            ) from None
        if file_id != opened:
            raise _FileChanged("was replaced")
        if not os.access(self.path, os.W_OK):
            raise StoreUnavailable(f"SQLite database file {self.path} is not writable")

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
                raise StoreUnavailable(f"SQLite store {self.path} is closed")
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
                raise StoreUnavailable(f"SQLite store {self.path} is closed") from None
            log.warning("SQLite store reopened on %s", self.path)

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise StoreConfigError(
                    f"SQLite store directory {parent} does not exist (store path {self.path})"
                )
        try:
            conn = sqlite3.connect(self.path, timeout=self._timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise store_error(f"cannot open SQLite store {self.path}: {exc}", exc) from exc
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != MEMORY and mode != "wal":
                raise StoreConfigError(f"SQLite store {self.path} cannot use WAL mode (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose a commit, not corrupt
            conn.executescript(f"BEGIN IMMEDIATE;{self._schema}COMMIT;")
        except sqlite3.Error as exc:
            conn.close()
            raise store_error(f"cannot initialise SQLite store {self.path}: {exc}", exc) from exc
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
            raise store_error(f"cannot open SQLite store {self.path}: {exc}", exc) from exc
        self._rconn = conn
        self._rfile_id = self._stat_id()

    def _close_writer(self) -> None:
        conn, self._conn = self._conn, None
        _close_quietly(conn, self.path)

    def _close_reader(self) -> None:
        conn, self._rconn = self._rconn, None
        _close_quietly(conn, self.path)

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

        await self.run("ping", ping_sync)
