"""The MongoDB store: the seed's collections written with PyMongo's async client, one module per concern
(accounts.py, sync_state.py, runs.py, positions.py, deals.py, events.py, equity.py), composed here with
the writes that span them."""

from __future__ import annotations

from collections.abc import Sequence

from agent.domain.accounts import AccountSyncState, AccountUpdate
from agent.store.checks import check_storable
from agent.store.codec import last_per_account
from agent.store.mongo.accounts import MongoAccounts
from agent.store.mongo.collections import ACCOUNTS, SYNC_RUNS, SYNC_STATE, CollectionNames
from agent.store.mongo.connection import MongoConnection
from agent.store.mongo.deals import MongoDeals
from agent.store.mongo.equity import MongoEquity
from agent.store.mongo.events import MongoEvents
from agent.store.mongo.positions import MongoPositions
from agent.store.mongo.runs import MongoRuns
from agent.store.mongo.shards import MongoShards
from agent.store.mongo.sync_state import MongoSyncState
from agent.store.observe import OperationObserver, operation


class MongoStore:
    """`Store` on MongoDB (or anything speaking its wire protocol)."""

    def __init__(
        self,
        url: str,
        database: str = "fidus_production",
        accounts_collection: str = ACCOUNTS,
        runs_collection: str = SYNC_RUNS,
        state_collection: str = SYNC_STATE,
        timeout_ms: int = 5000,
        collections: CollectionNames | None = None,
    ) -> None:
        """`collections` names every collection (the three `*_collection` arguments are then ignored)."""
        self._db = MongoConnection(url, database, timeout_ms)
        self.collections = collections or CollectionNames(
            accounts_collection, runs_collection, state_collection
        )
        self.accounts = MongoAccounts(self._db, self.collections.accounts)
        self.runs = MongoRuns(self._db, self.collections.runs)
        self.sync_state = MongoSyncState(self._db, self.collections.sync_state)
        names = self.collections
        self.events = MongoEvents(self._db, names.events, names.counters, names.event_keys)
        self.positions = MongoPositions(self._db, self.collections.positions, self.events._latest_id)
        self.deals = MongoDeals(self._db, self.collections.deals)
        self.shards = MongoShards(self._db)  # shard leases (issue 16)
        self.equity = MongoEquity(self._db, self.collections.equity)

    @property
    def database(self) -> str:
        return self._db.database

    @property
    def display_url(self) -> str:
        """The URL without its credentials."""
        return self._db.display_url

    def __repr__(self) -> str:
        return f"MongoStore({self.display_url!r}, database={self.database!r})"

    def observe_operations(self, observer: OperationObserver | None) -> None:
        """Report every operation of this store and its concerns to `observer` (None: stop)."""
        self._db.observe = observer

    @operation("open")
    async def open(self) -> None:
        """Connects and creates indexes. When the server is down it raises StoreUnavailable but keeps the
        client, so later calls recover by themselves once the server is back."""
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    @operation("ping")
    async def ping(self) -> None:
        await self._db.ping()

    @operation("write_cycle")
    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        updates, states = last_per_account(updates), last_per_account(states)
        if not updates and not states:
            await self._db.ping()  # nothing to write, but a down store must still say so
            return
        check_storable(updates, states)  # before any chunk is sent: refused means nothing written
        await self._db.ensure_indexes("write_cycle")
        async with self._db.guard("write_cycle") as client:
            # Unordered (any op may apply whatever another does), in chunks of bulk.BULK_CHUNK.
            await self.accounts.write_in(client, updates)
            await self.sync_state.write_in(client, states)
