"""The embedded default store: one SQLite file with the same behaviour as the MongoDB store, one module
per concern (accounts.py, sync_state.py, runs.py, positions.py, deals.py, events.py, equity.py), composed
here with the writes that span them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from agent.domain.accounts import AccountSyncState, AccountUpdate
from agent.store.checks import check_storable
from agent.store.codec import last_per_account
from agent.store.errors import StoreConfigError
from agent.store.observe import OperationObserver, operation
from agent.store.sqlite.accounts import SCHEMA as ACCOUNTS_SCHEMA
from agent.store.sqlite.accounts import SQLiteAccounts, update_rows, write_update_rows
from agent.store.sqlite.connection import MEMORY, SQLiteConnection, transaction
from agent.store.sqlite.deals import SCHEMA as DEALS_SCHEMA
from agent.store.sqlite.deals import SQLiteDeals
from agent.store.sqlite.encoding import IsoMemo
from agent.store.sqlite.equity import SCHEMA as EQUITY_SCHEMA
from agent.store.sqlite.equity import SQLiteEquity
from agent.store.sqlite.events import SCHEMA as EVENTS_SCHEMA
from agent.store.sqlite.events import SQLiteEvents
from agent.store.sqlite.positions import SCHEMA as POSITIONS_SCHEMA
from agent.store.sqlite.positions import SQLitePositions
from agent.store.sqlite.runs import SCHEMA as RUNS_SCHEMA
from agent.store.sqlite.runs import SQLiteRuns
from agent.store.sqlite.shards import SCHEMA as SHARDS_SCHEMA
from agent.store.sqlite.shards import SQLiteShards
from agent.store.sqlite.sync_state import SCHEMA as SYNC_STATE_SCHEMA
from agent.store.sqlite.sync_state import SQLiteSyncState, state_rows, write_state_rows

# Every concern's tables, created in one transaction when a connection opens (or reopens a new file).
SCHEMA = ACCOUNTS_SCHEMA + SYNC_STATE_SCHEMA + RUNS_SCHEMA + POSITIONS_SCHEMA + DEALS_SCHEMA + EVENTS_SCHEMA
SCHEMA += EQUITY_SCHEMA
SCHEMA += SHARDS_SCHEMA  # shard leases (issue 16)


class SQLiteStore:
    """`Store` on a SQLite file (WAL mode); `path` may be ":memory:" for tests."""

    def __init__(self, path: str, timeout_ms: int = 5000) -> None:
        if not path:
            raise StoreConfigError("SQLite store path is empty")
        self._db = SQLiteConnection(path, timeout_ms, SCHEMA)
        self.accounts = SQLiteAccounts(self._db)
        self.sync_state = SQLiteSyncState(self._db)
        self.runs = SQLiteRuns(self._db)
        self.positions = SQLitePositions(self._db)
        self.deals = SQLiteDeals(self._db)
        self.events = SQLiteEvents(self._db)
        self.equity = SQLiteEquity(self._db)
        self.shards = SQLiteShards(self._db)

    @property
    def path(self) -> str:
        """Absolute (or ":memory:"): file checks must not depend on a later working directory."""
        return self._db.path

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def observe_operations(self, observer: OperationObserver | None) -> None:
        """Report every operation of this store and its concerns to `observer` (None: stop)."""
        self._db.observe = observer

    @operation("open")
    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    @operation("ping")
    async def ping(self) -> None:
        await self._db.ping()

    @operation("write_cycle")
    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        """One transaction for the whole cycle; the last entry per account wins."""
        updates, states = last_per_account(updates), last_per_account(states)
        if not updates and not states:
            await self._db.ping()  # nothing to write, but a down store must still say so
            return

        def write_sync(conn: sqlite3.Connection) -> None:
            # Encoding runs here too, off the event loop: it is most of a 10,000-account cycle's cost.
            check_storable(updates, states)
            iso = IsoMemo()
            account_rows = update_rows(updates, iso)
            states_rows = state_rows(states, iso)
            with transaction(conn):
                write_update_rows(conn, account_rows)
                write_state_rows(conn, states_rows)

        await self._db.run("write_cycle", write_sync)


__all__ = ["MEMORY", "SQLiteStore"]
