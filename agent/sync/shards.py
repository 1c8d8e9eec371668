"""Shards (issue 16, DESIGN.md section 13): `MT5_AGENT_SHARD=i/N` makes an agent own the logins with
`login % N == i` across all its sources, over one store every shard shares.

- `ShardedSource` filters at the source boundary: its account listing holds only owned logins, so the sync
  cycle, the positions poller and event detection (which read accounts the app hands them, taken from
  the fleet and filtered the same way) never touch another shard's accounts.
- The fleet keeps every account of the store (the API answers for all of them from any shard): the
  accounts this shard does not own are mirrored from the store (`Fleet.refresh`, every
  `MT5_AGENT_STORE_REFRESH` seconds) and never pruned by its cycles.
- `OwnedFleetView` is the fleet as the metrics see it: owned accounts only, so the union of every shard's
  `/metrics` covers each account exactly once.
- `ShardMonitor` keeps this shard's lease document in the store (agent.store.shard_lease) and reads the
  others': two live shards with the same index, or a count N that disagrees, are logged, counted
  (`mt5_agent_shard_conflicts{kind}`) and, for a duplicate index, make /readyz answer 503. Detection only:
  the assignment stays static.

Liveness of a lease is judged by its heartbeat time as written by its shard's own clock: shards whose
clocks differ by more than the expiry (3 heartbeats) would miss each other (NTP is assumed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from agent.config import ShardSpec
from agent.domain.tasks import cancel_and_wait
from agent.sources.base import AccountListing, AccountReads, DealsRead, PositionsRead, Source, SourceHealth
from agent.store.shard_lease import ShardLease, ShardLeaseStore
from agent.sync.fleet import Fleet, FleetSnapshot, SyncStatus

log = logging.getLogger("mt5_agent.shards")

CONFLICT_KINDS: tuple[str, ...] = ("duplicate_index", "count_mismatch")
PRUNE_AFTER = timedelta(hours=1)  # leases not renewed for this long are dropped (crashed shards)
PRUNE_EVERY = timedelta(minutes=10)


class ShardedSource:
    """A source seen through a shard: the listing keeps owned logins only; everything else is the inner
    source's (reads are only ever asked for listed, hence owned, accounts)."""

    def __init__(self, inner: Source, shard: ShardSpec) -> None:
        self.inner = inner
        self.shard = shard
        self.name = inner.name
        self.kind = inner.kind
        self.foreign = 0  # logins the last listing held for other shards

    def __getattr__(self, name: str) -> Any:  # the inner source's extras (MetaAPI connection states...)
        return getattr(self.inner, name)

    async def health(self) -> SourceHealth:
        return await self.inner.health()

    async def usable_health(self, attempts: int, backoff: float) -> SourceHealth:
        return await self.inner.usable_health(attempts, backoff)

    async def list_accounts(self) -> AccountListing:
        listing = await self.inner.list_accounts()
        owns = self.shard.owns
        mine = [a for a in listing.accounts if owns(a.account)]
        self.foreign = len(listing.accounts) - len(mine)
        return AccountListing(accounts=mine, invalid=listing.invalid)

    async def read_accounts(self, accounts: Sequence[int], deadline: float) -> AccountReads:
        return await self.inner.read_accounts(accounts, deadline)

    def positions_supported(self, health: SourceHealth | None = None) -> bool:
        return self.inner.positions_supported(health)

    async def read_positions(self, account: int, deadline: float | None = None) -> PositionsRead:
        return await self.inner.read_positions(account, deadline)

    def shared_terminal(self, account: int) -> str | None:
        return self.inner.shared_terminal(account)

    def read_positions_many(
        self, accounts: Sequence[int], deadline: float
    ) -> AsyncIterator[tuple[int, PositionsRead]]:
        return self.inner.read_positions_many(accounts, deadline)

    async def read_deals(
        self, account: int, since: datetime, until: datetime, deadline: float | None = None
    ) -> DealsRead:
        return await self.inner.read_deals(account, since, until, deadline)

    async def close(self) -> None:
        await self.inner.close()


def unwrap(source: object) -> object:
    """The source behind a `ShardedSource` (itself otherwise)."""
    return source.inner if isinstance(source, ShardedSource) else source


class OwnedFleetView:
    """The fleet with only the accounts `owns` accepts (and their failure counts): what the metrics
    export. Filtered once per fleet version."""

    def __init__(self, fleet: Fleet, owns: Callable[[int], bool]) -> None:
        self.fleet = fleet
        self.owns = owns
        self._cached: FleetSnapshot | None = None
        self._version = -1

    def snapshot(self) -> FleetSnapshot:
        snap = self.fleet.snapshot()
        if self._cached is None or self._version != snap.version:
            owns = self.owns
            accounts = {a: s for a, s in snap.accounts.items() if owns(a)}
            failures = {k: n for k, n in snap.failures.items() if owns(k[0])}
            self._cached = FleetSnapshot(snap.version, MappingProxyType(accounts), MappingProxyType(failures))
            self._version = snap.version
        return self._cached

    @property
    def version(self) -> int:
        return self.fleet.version

    @property
    def status(self) -> SyncStatus:
        return self.fleet.status

    @property
    def sources(self) -> Mapping[str, SyncStatus]:
        return self.fleet.sources


def instance_id() -> str:
    """Unique per process: host, pid and a random part (a restarted pod keeps its host name)."""
    host = socket.gethostname()[:64] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(4)}"


class ShardMonitor:
    """This shard's lease heartbeat and what the other leases say (see the module docstring). Every
    `heartbeat` seconds: write the lease, read them all, judge; every `refresh` seconds, `on_refresh`
    (the fleet's re-read of the account documents)."""

    def __init__(
        self,
        store: ShardLeaseStore,
        shard: ShardSpec,
        *,
        heartbeat: float = 5.0,
        refresh: float | None = None,
        on_refresh: Callable[[], Awaitable[object]] | None = None,
        instance: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.shard = shard
        self.heartbeat = heartbeat
        self.expiry = timedelta(seconds=max(3 * heartbeat, 1.0))
        self.refresh = refresh
        self.on_refresh = on_refresh
        self.instance = instance or instance_id()
        self.clock = clock
        self.started_at = clock()
        self.conflicts: dict[str, list[ShardLease]] = {kind: [] for kind in CONFLICT_KINDS}
        self.peers: list[ShardLease] = []  # the live leases last read, this shard's own included
        self.lease_up: bool | None = None  # the last heartbeat was written (None: not tried yet)
        self._reported: tuple[str, ...] = ()
        self._pruned_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def lease(self) -> ShardLease:
        return ShardLease(self.instance, self.shard.index, self.shard.count, self.started_at, self.clock())

    def problem(self) -> str | None:
        """What /readyz says while another live shard holds this index (None: nothing)."""
        dup = self.conflicts["duplicate_index"]
        if not dup:
            return None
        return f"shard {self.shard}: another live instance holds the same index ({len(dup)})"

    async def beat_once(self) -> None:
        """Write the lease, read every lease, judge; a store failure is logged (retried next beat)."""
        try:
            lease = self.lease
            await self.store.beat(lease)
            leases = await self.store.list_leases()
            now = lease.heartbeat_at
            if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
                self._pruned_at = now
                await self.store.prune_leases(now - PRUNE_AFTER)
        except Exception as exc:
            if self.lease_up is not False:
                log.warning(
                    "shard %s: could not renew its lease in the store (%s); retrying", self.shard, exc
                )
            self.lease_up = False
            return
        if self.lease_up is False:
            log.info("shard %s: lease renewed again", self.shard)
        self.lease_up = True
        self.judge(leases, now)

    def judge(self, leases: Sequence[ShardLease], now: datetime) -> None:
        """Which other leases are live and conflict with this shard (and say so once per change)."""
        me = self.shard
        # A lease of this very shard (same i/N) that has not beaten since this process started may be its
        # own crashed predecessor (a restarted pod): only one beating since then is a live duplicate.
        live = [
            x
            for x in leases
            if x.instance == self.instance
            or (
                x.heartbeat_at >= now - self.expiry
                and (x.heartbeat_at > self.started_at or (x.index, x.count) != (me.index, me.count))
            )
        ]
        self.peers = live
        others = [x for x in live if x.instance != self.instance]
        self.conflicts = {
            "duplicate_index": [x for x in others if x.index == me.index and x.count == me.count],
            "count_mismatch": [x for x in others if x.count != me.count],
        }
        report = tuple(
            f"{kind}:{x.instance}:{x.index}/{x.count}"
            for kind in CONFLICT_KINDS
            for x in self.conflicts[kind]
        )
        if report == self._reported:
            return
        self._reported = report
        if not report:
            log.info("shard %s: no conflicting shard any more", me)
            return
        dup, mismatch = self.conflicts["duplicate_index"], self.conflicts["count_mismatch"]
        if dup:
            log.error(
                "shard %s: %d other live shard(s) hold the same index (%s): their accounts are synced twice; "
                "give each shard its own index",
                me,
                len(dup),
                ", ".join(x.instance for x in dup),
                extra={"shard": str(me), "duplicate_index": len(dup)},
            )
        if mismatch:
            log.error(
                "shard %s: %d live shard(s) disagree on the shard count (%s): accounts may be synced "
                "twice or by no shard until every shard has the same N",
                me,
                len(mismatch),
                ", ".join(f"{x.instance} as {x.index}/{x.count}" for x in mismatch),
                extra={"shard": str(me), "count_mismatch": len(mismatch)},
            )

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shard-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        try:  # a clean stop frees the index at once (a crash leaves the lease to expire)
            await asyncio.wait_for(self.store.release(self.instance), 2.0)
        except Exception as exc:
            log.debug("shard %s: lease not released (%s)", self.shard, exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refreshing = self.on_refresh is not None and self.refresh is not None
        next_beat = next_refresh = loop.time()
        while True:
            now = loop.time()
            if refreshing and now >= next_refresh:  # first: at start it opens the store the lease needs
                next_refresh = now + (self.refresh or 0.0)
                try:
                    await self.on_refresh()  # type: ignore[misc]
                except Exception:
                    log.exception("shard %s: re-reading the account documents failed", self.shard)
            if now >= next_beat:
                next_beat = now + self.heartbeat
                await self.beat_once()
            wake = min(next_beat, next_refresh) if refreshing else next_beat
            await asyncio.sleep(max(0.01, wake - loop.time()))
