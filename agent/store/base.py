"""The store interface both implementations (SQLite, MongoDB) satisfy; one contract test suite
(tests/store/test_store_contract.py) runs against both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agent.models import AccountRecord, AccountSyncState, AccountUpdate, SyncRun


class StoreError(Exception):
    """The store could not be reached or refused a write; the cycle records reason `store`."""


@runtime_checkable
class Store(Protocol):
    async def open(self) -> None:
        """Connect and create indexes/tables. Raises StoreError when unreachable."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the store is not reachable."""

    async def write_cycle(self, updates: Sequence[AccountUpdate], states: Sequence[AccountSyncState]) -> None:
        """Apply one cycle's account updates and sync states: one bulk write (Mongo) or one transaction
        (SQLite). Updates `$set` only SYNCED_FIELDS (and `$setOnInsert` INSERT_ONLY_FIELDS)."""

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
        none yet (never-synced account), touching no synced field. Operator tooling, not a sync."""

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        """Provisioning (not used by a sync): insert or replace whole account documents, e.g. with
        client_id and credentials. Used by tests, the demo and admin tooling."""
