"""SHIM(issue 11): today's flat store methods (`store.get_accounts()`, `store.record_run()`...), each
delegating to its concern, so callers keep working until they use `store.accounts`, `store.runs` and
`store.sync_state`; the lead removes this mixin (and `FlatStore` in base.py) once they do."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agent.domain.accounts import AccountRecord, AccountSyncState
from agent.domain.runs import SyncRun
from agent.store.base import AccountStore, RunStore, SyncStateStore


class FlatStoreMethods:
    """Mixed into each backend; the names are also the store operation labels in /metrics."""

    accounts: AccountStore
    sync_state: SyncStateStore
    runs: RunStore

    async def get_accounts(self, *, client_id: str | None = None) -> list[AccountRecord]:
        return await self.accounts.get_accounts(client_id=client_id)

    async def get_account(self, account: int) -> AccountRecord | None:
        return await self.accounts.get_account(account)

    async def set_client(self, account: int, client_id: str | None) -> None:
        await self.accounts.set_client(account, client_id)

    async def put_account_documents(self, docs: Sequence[Mapping[str, Any]]) -> None:
        await self.accounts.put_account_documents(docs)

    async def get_sync_states(self) -> dict[int, AccountSyncState]:
        return await self.sync_state.get_sync_states()

    async def record_run(self, run: SyncRun) -> None:
        await self.runs.record_run(run)

    async def list_runs(self, *, limit: int = 50, offset: int = 0) -> list[SyncRun]:
        return await self.runs.list_runs(limit=limit, offset=offset)

    async def count_runs(self) -> int:
        return await self.runs.count_runs()
