"""Shard leases (issue 16): each agent shard (`MT5_AGENT_SHARD=i/N`) keeps one heartbeat document in the
shared store, so two live shards with the same index, or shards that disagree on N, see each other.
Detection only: the assignment of accounts stays static (`login % N == i`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from agent.store.codec import parse_dt, utc_ms

log = logging.getLogger(__name__)

INSTANCE_MAX_LENGTH = 128
SHARD_COUNT_MAX = 4096


@dataclass(frozen=True)
class ShardLease:
    """One running shard: `instance` is unique per process (host, pid, random part)."""

    instance: str
    index: int
    count: int
    started_at: datetime
    heartbeat_at: datetime


def check_lease(lease: ShardLease) -> ShardLease:
    """ValueError for a lease no shard could hold (checked before anything is written)."""
    if not isinstance(lease.instance, str) or not 1 <= len(lease.instance) <= INSTANCE_MAX_LENGTH:
        raise ValueError(f"shard instance must be 1 to {INSTANCE_MAX_LENGTH} characters")
    if type(lease.count) is not int or not 1 <= lease.count <= SHARD_COUNT_MAX:
        raise ValueError(f"shard count must be 1 to {SHARD_COUNT_MAX}, got {lease.count!r}")
    if type(lease.index) is not int or not 0 <= lease.index < lease.count:
        raise ValueError(f"shard index must be 0 to {lease.count - 1}, got {lease.index!r}")
    return lease


def lease_to_doc(lease: ShardLease) -> dict[str, Any]:
    check_lease(lease)
    return {
        "instance": lease.instance,
        "index": lease.index,
        "count": lease.count,
        "started_at": utc_ms(lease.started_at),
        "heartbeat_at": utc_ms(lease.heartbeat_at),
    }


def lease_from_doc(doc: Mapping[str, Any]) -> ShardLease | None:
    """A stored lease, or None (logged) when it is not one a shard could have written."""
    started = parse_dt(doc.get("started_at"), "started_at")
    beat = parse_dt(doc.get("heartbeat_at"), "heartbeat_at")
    try:
        if started is None or beat is None:
            raise ValueError("missing times")
        return check_lease(
            ShardLease(
                instance=doc.get("instance"),  # type: ignore[arg-type]
                index=doc.get("index"),  # type: ignore[arg-type]
                count=doc.get("count"),  # type: ignore[arg-type]
                started_at=started,
                heartbeat_at=beat,
            )
        )
    except ValueError as exc:
        log.warning("stored shard lease %r ignored: %s", str(doc.get("instance"))[:64], exc)
        return None


@runtime_checkable
class ShardLeaseStore(Protocol):
    """`mt5_agent_shards`: one document per running shard process, keyed by `instance`."""

    async def beat(self, lease: ShardLease) -> None:
        """Insert or replace the lease of `lease.instance`. ValueError for an impossible lease."""

    async def list_leases(self) -> list[ShardLease]:
        """Every stored lease (expired ones too), ordered by (index, instance)."""

    async def release(self, instance: str) -> None:
        """Drop the lease of `instance` (a shard stopping cleanly); nothing when there is none."""

    async def prune_leases(self, before: datetime) -> int:
        """Drop leases whose last heartbeat is older than `before`; how many were dropped."""
