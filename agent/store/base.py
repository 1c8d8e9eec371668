"""The store's interfaces, one per concern, and the backend that composes them.

Each concern (accounts, sync state, runs, positions, deals, events, equity) is one protocol here, one
module per backend (agent/store/sqlite/<concern>.py, agent/store/mongo/<concern>.py) and one attribute of
the backend object (`store.accounts`, `store.sync_state`, `store.runs`). Writes that must land together
(a cycle's account updates and sync states) are methods of the backend, which owns the transaction.
One contract suite (tests/store/) runs every protocol against both backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from agent.domain.accounts import AccountRecord, AccountSyncState, AccountUpdate
from agent.domain.equity import EquityPoint
from agent.domain.runs import SyncRun
from agent.domain.trades import Deal, EventType, PositionsSnapshot, TradeEvent
from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.observe import OperationObserver
from agent.store.shard_lease import ShardLeaseStore

__all__ = [
    "AccountStore",
    "DealStore",
    "EquityStore",
    "EventStore",
    "OperationObserver",
    "PositionStore",
    "RunStore",
    "ShardLeaseStore",
    "Store",
    "StoreBackend",
    "StoreConfigError",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "SyncStateStore",
    "cursor_expired",
]


@runtime_checkable
class AccountStore(Protocol):
    """`mt5_accounts`: one document per account. A sync `$set`s only SYNCED_FIELDS (`$setOnInsert`
    INSERT_ONLY_FIELDS); reads return allow-listed fields only, so credentials never leave the store."""

    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        """Every account (or a client's), ordered by account number."""

    async def get_account(self, account: int) -> AccountRecord | None: ...

    async def write_updates(self, updates: Sequence[AccountUpdate]) -> None:
        """A cycle's account updates on their own (`StoreBackend.write_cycle` writes them together with
        the sync states); the last update per account wins. StoreRejected (nothing written) when a value
        cannot be stored."""

    async def set_client(self, account: int, client_id: str | None) -> None:
        """Assign an account to a client (None: unassign). Creates the account document when it has
        none yet (never-synced account), touching no synced field; unassigning an account without a
        document creates nothing. Operator tooling, not a sync. ValueError for an account outside
        1..2**63-1 or a client id that `agent.store.checks.client_id_problem` refuses."""

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Provisioning (not used by a sync): insert or replace whole account documents, e.g. with
        client_id and credentials. Used by tests, the demo and admin tooling."""

    async def get_sources(self) -> dict[int, str]:
        """The name of the source (agent setting) that last held each account, by account: for the
        accounts whose document records one (documents written before issue 15 do not)."""

    async def set_sources(self, sources: Mapping[int, str]) -> None:
        """Record which source holds each account, in the `source` field of documents that exist (an
        account without a document gets none: a document is created by a sync's write). Agent
        bookkeeping beside the seed's fields: never returned by the API."""


@runtime_checkable
class SyncStateStore(Protocol):
    """Per-account failure counts and times (`mt5_sync_state`), replaced whole on each write."""

    async def get_sync_states(self) -> dict[int, AccountSyncState]: ...

    async def write_states(self, states: Sequence[AccountSyncState]) -> None:
        """Upsert whole states; the last one per account wins."""


@runtime_checkable
class RunStore(Protocol):
    """Sync history (`mt5_sync_runs`)."""

    async def record_run(self, run: SyncRun) -> None:
        """Insert, or replace the run with the same run_id."""

    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        """Newest first."""

    async def count_runs(self) -> int: ...


@runtime_checkable
class PositionStore(Protocol):
    """`mt5_positions`: the last known open positions of each account, one whole snapshot per account
    (the detector's previous snapshot, read back at start to catch up; the API's open positions)."""

    async def replace_positions(self, account: int, snapshot: PositionsSnapshot) -> PositionsSnapshot:
        """Replace the account's whole set at once (a reader sees the old set or the new, never a mix);
        an empty snapshot is kept too (the account has no open position). Returns the snapshot as
        stored: times at ms, and `as_of_event_id` the snapshot's own or, when None, the store's
        `events.latest_id()` at the write, so append a snapshot's events before replacing it.
        ValueError when the snapshot or a position is another account's; StoreRejected (nothing
        written) for a value the store cannot hold."""

    async def get_positions(self, account: int) -> PositionsSnapshot | None:
        """None when no snapshot was ever stored for the account."""

    async def get_all_positions(self) -> dict[int, PositionsSnapshot]:
        """Every account's snapshot, by account (ordered by account number)."""


@runtime_checkable
class DealStore(Protocol):
    """`mt5_deals`: deals seen by the deal sweep, keyed by (account, ticket)."""

    async def put_deals(self, deals: Sequence[Deal]) -> None:
        """Insert or replace by (account, ticket): the same deal twice is stored once (the last in a
        batch wins). One transaction (SQLite) or one bulk write (MongoDB, in chunks of 1,000).
        StoreRejected naming the accounts (nothing written) for a value the store cannot hold."""

    async def get_deals(
        self,
        account: int,
        *,
        position_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Deal]:
        """The account's deals with `since <= time < until` (either bound optional; both floored to
        the ms like stored times), of one position when `position_id` is given; ordered by (time,
        ticket)."""

    async def latest_deal_time(self, account: int) -> datetime | None:
        """The time of the account's newest stored deal (where a deal sweep resumes), None if none."""


@runtime_checkable
class EventStore(Protocol):
    """`mt5_trade_events`: detected trade events, each with a store-assigned id and a unique dedup_key.

    Ids are integers, strictly increasing in the order a store object commits them and never reused
    (not even after pruning); there may be gaps (MongoDB: ids claimed by a write that then failed).
    Two store objects writing one MongoDB (shards) draw from one counter: ids stay unique, and
    increasing per writer, but one writer may commit an id lower than one the other committed before.
    A cursor (`after`) is valid while `after >= oldest_available() - 1`; when nothing is retained, while
    `after >= latest_id()`. Anything older was pruned: the API answers 410 cursor_expired."""

    async def append_events(self, events: Sequence[TradeEvent]) -> list[TradeEvent]:
        """Store the events whose dedup_key was never stored (within a batch, the first per key) and
        return ONLY those, with their new ids, in id order (= input order): an event already stored,
        by this call or any earlier one, is neither stored again nor returned. An input `id` is
        ignored. `data` must be a JSON object (reads back as dicts and lists). One transaction
        (SQLite) or one bulk insert (MongoDB). StoreRejected naming the accounts (nothing written)
        for a value the store cannot hold; ValueError for an empty dedup_key."""

    async def list_events(
        self,
        *,
        after: int = 0,
        limit: int,
        accounts: set[int] | None = None,
        types: set[EventType] | None = None,
    ) -> list[TradeEvent]:
        """Up to `limit` events with id > `after`, in id order, of `accounts` and `types` when given
        (an empty set matches nothing)."""

    async def dedup_keys(self, *, accounts: set[int] | None = None) -> list[str]:
        """The dedup keys of every event ever stored, pruned ones included (of `accounts` when given), in
        id order: what a detector rebuilding its state at start needs (`DetectorState.from_facts`),
        without the events' bodies."""

    async def latest_id(self) -> int:
        """The greatest stored id; when none is stored, the greatest ever assigned (0: none ever)."""

    async def oldest_available(self) -> int | None:
        """The smallest id still retained, None when none is."""

    async def prune_events(self, *, keep_after: datetime | None = None, max_events: int | None = None) -> int:
        """Drop the oldest events, always a prefix in id order (so `oldest_available` bounds what is
        gone): those before the first event (by id) detected at or after `keep_after`, and all but the
        newest `max_events`. Both given: whichever drops more. Returns how many were dropped. Their
        dedup keys are kept (`mt5_trade_event_keys`, ~60 bytes an event): a change detected again
        after its event was pruned (a restart re-reading old deals) is still not stored twice."""


@runtime_checkable
class EquityStore(Protocol):
    """`mt5_equity`: recorded equity (and balance) points, keyed by (account, time). Which points are
    recorded is the recorder's choice (agent.analytics.equity: sampled, live values only); the store
    keeps them, reads an account's range back and drops old ones."""

    async def put_equity(self, points: Sequence[EquityPoint]) -> None:
        """Insert or replace by (account, time), times floored to the ms: a point recorded twice (a restart,
        two shards) is stored once. One transaction (SQLite) or one bulk write (MongoDB, chunks of 1,000).
        StoreRejected naming the accounts (nothing written) for a value the store cannot hold."""

    async def get_equity(
        self, account: int, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[EquityPoint]:
        """The account's points with `since <= time < until` (either bound optional), in time order."""

    async def prune_equity(self, before: datetime) -> int:
        """Drop every account's points older than `before`; returns how many were dropped."""


def cursor_expired(after: int, oldest_available: int | None, latest_id: int) -> bool:
    """Whether events after `after` may have been pruned (the API's 410 cursor_expired): `after` below
    the retained history (`oldest_available() - 1`), or, with nothing retained, below `latest_id()`.
    Read both AFTER reading the page (a prune between the checks and the read would go unnoticed), and
    `latest_id` before `oldest_available` (else an event stored between them makes an empty store look
    pruned)."""
    if oldest_available is None:
        return after < latest_id
    return after < oldest_available - 1


@runtime_checkable
class StoreBackend(Protocol):
    """One backend (SQLite file, MongoDB database): its lifecycle, its concerns, and the writes that span
    concerns. A new concern adds an attribute here and a module per backend. (Read-only properties: a
    backend's attribute may then hold its own concern class.)"""

    @property
    def accounts(self) -> AccountStore: ...
    @property
    def sync_state(self) -> SyncStateStore: ...
    @property
    def runs(self) -> RunStore: ...
    @property
    def positions(self) -> PositionStore: ...
    @property
    def deals(self) -> DealStore: ...
    @property
    def events(self) -> EventStore: ...
    @property
    def shards(self) -> ShardLeaseStore: ...
    @property
    def equity(self) -> EquityStore: ...

    def observe_operations(self, observer: OperationObserver | None) -> None:
        """Report each operation (its name, e.g. `get_accounts`, and its duration in seconds, failed
        ones included) of this backend and its concerns to `observer`; None stops reporting."""

    async def open(self) -> None:
        """Connect and create indexes/tables. Raises StoreError when unreachable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the store is not reachable."""

    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        """Apply one cycle's account updates and sync states: one bulk write per collection (Mongo) or one
        transaction (SQLite); the last entry per account wins. StoreRejected (nothing written) when a
        value cannot be stored; StoreError when the store fails."""


@runtime_checkable
class Store(StoreBackend, Protocol):
    """What `open_store` returns: a backend with its concerns (`accounts`, `sync_state`, `runs`,
    `positions`, `deals`, `events`, `equity`)."""
