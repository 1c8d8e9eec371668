"""The store's interfaces, one per concern, and the backend that composes them.

Each concern (accounts, sync state, runs; next: positions, events, deals) is one protocol here, one
module per backend (agent/store/sqlite/<concern>.py, agent/store/mongo/<concern>.py) and one attribute of
the backend object (`store.accounts`, `store.sync_state`, `store.runs`). Writes that must land together
(a cycle's account updates and sync states) are methods of the backend, which owns the transaction.
One contract suite (tests/store/) runs every protocol against both backends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.domain.accounts import AccountRecord, AccountSyncState, AccountUpdate
from agent.domain.runs import SyncRun
from agent.store.errors import StoreConfigError, StoreError, StoreRejected, StoreUnavailable
from agent.store.observe import OperationObserver

__all__ = [
    "AccountStore",
    "OperationObserver",
    "RunStore",
    "Store",
    "StoreBackend",
    "StoreConfigError",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "SyncStateStore",
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
class StoreBackend(Protocol):
    """One backend (SQLite file, MongoDB database): its lifecycle, its concerns, and the writes that span
    concerns. A new concern adds an attribute here and a module per backend."""

    accounts: AccountStore
    sync_state: SyncStateStore
    runs: RunStore

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
    """What `open_store` returns: a backend with its concerns (`accounts`, `sync_state`, `runs`)."""
