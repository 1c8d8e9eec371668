"""Shard leases (agent.store.shard_lease, issue 16) on both stores: upsert by instance, list ordered,
release, prune by heartbeat age; an impossible lease is refused before writing, a garbage document read
back is skipped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.store.base import Store
from agent.store.shard_lease import ShardLease

T0 = datetime(2026, 12, 2, 5, 0, 0, 123456, tzinfo=UTC)


async def test_leases_round_trip(store: Store) -> None:
    await store.shards.beat(ShardLease("b:1:x", 1, 2, T0, T0))
    await store.shards.beat(ShardLease("a:1:x", 0, 2, T0, T0))
    await store.shards.beat(ShardLease("b:1:x", 1, 2, T0, T0 + timedelta(seconds=5)))  # renewed
    leases = await store.shards.list_leases()
    assert [(x.instance, x.index, x.count) for x in leases] == [("a:1:x", 0, 2), ("b:1:x", 1, 2)]
    assert leases[1].heartbeat_at == (T0 + timedelta(seconds=5)).replace(microsecond=123000)
    assert await store.shards.prune_leases(T0 + timedelta(seconds=1)) == 1
    assert [x.instance for x in await store.shards.list_leases()] == ["b:1:x"]
    await store.shards.release("b:1:x")
    await store.shards.release("nobody")
    assert await store.shards.list_leases() == []


@pytest.mark.parametrize(
    "lease",
    [
        ShardLease("", 0, 1, T0, T0),
        ShardLease("x", 2, 2, T0, T0),
        ShardLease("x", -1, 2, T0, T0),
        ShardLease("x", 0, 0, T0, T0),
        ShardLease("x" * 129, 0, 1, T0, T0),
    ],
)
async def test_an_impossible_lease_is_refused(store: Store, lease: ShardLease) -> None:
    with pytest.raises(ValueError):
        await store.shards.beat(lease)
    assert await store.shards.list_leases() == []
