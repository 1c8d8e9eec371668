"""MongoStore writes a cycle in BULK_CHUNK-sized unordered bulk writes (each round trip must finish
within socketTimeoutMS): every account and state lands whatever the chunk boundaries."""

from __future__ import annotations

import pytest

from agent.domain.accounts import AccountSyncState
from agent.store.mongo import bulk

from .conftest import Backend
from .factories import T0, update


@pytest.mark.parametrize("n", [1, 3, 7])
async def test_every_chunk_is_written(n: int, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend.name != "mongo":
        pytest.skip("MongoStore only")
    monkeypatch.setattr(bulk, "BULK_CHUNK", 3)
    store = backend.make()
    await store.open()
    try:
        updates = [update(100 + i, balance=1000.0 + i, name=f"A{i}") for i in range(n)]
        states = [AccountSyncState(100 + i, consecutive_failures=i, last_attempt_at=T0) for i in range(n)]
        await store.write_cycle(updates, states)
        records = await store.accounts.get_accounts()
        assert [(r.account, r.balance, r.name) for r in records] == [
            (100 + i, 1000.0 + i, f"A{i}") for i in range(n)
        ]
        got = await store.sync_state.get_sync_states()
        assert {a: s.consecutive_failures for a, s in got.items()} == {100 + i: i for i in range(n)}
    finally:
        await store.close()
