"""The store interface both implementations (SQLite, MongoDB) satisfy; one contract test suite
(tests/store/test_store_contract.py) runs against both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.models import AccountRecord, AccountSyncState, AccountUpdate, SyncRun


class StoreError(Exception):
    """The store could not be reached or failed the operation; the cycle records reason `store`."""


class StoreRejected(StoreError):
    """The store is up but refuses the data itself: a value it cannot hold (an integer beyond 64 bits, a
    non-finite number). Nothing of the write was applied. `accounts` names the accounts whose data was
    refused, so a caller can fail only those and write the others instead of treating the whole store
    as down."""

    def __init__(self, message: str, accounts: Iterable[int] = ()) -> None:
        super().__init__(message)
        self.accounts: frozenset[int] = frozenset(accounts)


@runtime_checkable
class Store(Protocol):
    async def open(self) -> None:
        """Connect and create indexes/tables. Raises StoreError when unreachable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the store is not reachable."""

    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        """Apply one cycle's account updates and sync states: one bulk write (Mongo) or one transaction
        (SQLite). Updates `$set` only SYNCED_FIELDS (and `$setOnInsert` INSERT_ONLY_FIELDS).
        StoreRejected (nothing written) when a value cannot be stored; StoreError when the store fails."""

    async def record_run(self, run: SyncRun) -> None: ...

    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        """Newest first."""

    async def count_runs(self) -> int: ...

    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        """Every account (or a client's), ordered by account number."""

    async def get_account(self, account: int) -> AccountRecord | None: ...

    async def get_sync_states(self) -> dict[int, AccountSyncState]: ...

    async def set_client(self, account: int, client_id: str | None) -> None:
        """Assign an account to a client (None: unassign). Creates the account document when it has
        none yet (never-synced account), touching no synced field; unassigning an account without a
        document creates nothing. Operator tooling, not a sync. ValueError for an account outside
        1..2**63-1 or a client id that `agent.store._common.client_id_problem` refuses."""

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Provisioning (not used by a sync): insert or replace whole account documents, e.g. with
        client_id and credentials. Used by tests, the demo and admin tooling."""
