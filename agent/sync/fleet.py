"""The fleet: the one in-memory read model of every account the agent knows (DESIGN.md section 2).

The API and the metrics both read it; nothing else rebuilds it. It is loaded from the store at start
(values, client assignments, sync bookkeeping) and then applied from each cycle's outcome: what the
cycle wrote, with the same merge rule as the store (`agent.domain.accounts.merge_values`).

Two frozen values, each replaced whole and never mutated, so a reader holding one sees one instant:
- `Fleet.snapshot() -> FleetSnapshot`: `version`, `accounts` (an `AccountState` per account, read-only,
  ordered by account) and `failures` (per (account, reason) since process start; a missing key reads
  0, as in the status's counters). The version moves whenever accounts or failures change (store
  loaded, cycle applied, accounts pruned, client assigned): a reader may cache whatever it derives
  from a snapshot per version.
- `Fleet.status -> SyncStatus`: is the source up, the store, the terminal; last health and probe; last
  and running run; run and malformed-entry counters; clock skew; pruned total. Kept apart from the
  snapshot because it changes far more often (every probe) and must not invalidate per-version caches.

Writers: the sync cycle (`load`, `apply`, `prune`, `update_status`), the prober (`update_status`), the
client assignment (`set_client`). All run on the event loop: no locks.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from agent.domain.accounts import (
    VALUE_FIELDS,
    AccountRecord,
    AccountSyncState,
    AccountUpdate,
    AccountValues,
    Reason,
    merge_values,
)
from agent.domain.runs import RunResult, SyncRun
from agent.sources.base import ListedAccount, SourceHealth


def _counts() -> Mapping[Any, int]:
    """A read-only count map in which a missing key reads 0 (as in Counter)."""
    return MappingProxyType(Counter())


@dataclass(frozen=True, slots=True)
class AccountState:
    """One account as the fleet knows it: its last written values and its sync bookkeeping."""

    account: int
    name: str | None = None
    server: str | None = None
    client_id: str | None = None  # for access checks; never part of public responses by default
    values: AccountValues | None = None
    data_source: str | None = None  # a DataSource value, as stored
    live_data_at: datetime | None = None
    updated_at: datetime | None = None
    consecutive_failures: int = 0
    last_reason: Reason | None = None
    last_failure_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_live_at: datetime | None = None
    has_sync_state: bool = False  # a cycle attempted it (or the store had its bookkeeping)
    source: str | None = None  # the source holding it (first to list it); None: loaded, not listed yet

    @property
    def currency(self) -> str | None:
        return self.values.currency if self.values else None

    def sync_state(self) -> AccountSyncState:
        return AccountSyncState(
            account=self.account,
            consecutive_failures=self.consecutive_failures,
            last_reason=self.last_reason,
            last_failure_at=self.last_failure_at,
            last_attempt_at=self.last_attempt_at,
            last_live_at=self.last_live_at,
        )

    @classmethod
    def from_record(cls, r: AccountRecord) -> AccountState:
        values = None
        if r.balance is not None:  # a document created by a client assignment has no values yet
            values = AccountValues(**{f: getattr(r, f) for f in VALUE_FIELDS})
        return cls(
            account=r.account,
            name=r.name,
            server=r.server,
            client_id=r.client_id,
            values=values,
            data_source=r.data_source,
            live_data_at=r.live_data_at,
            updated_at=r.updated_at,
        )


def _with_sync_state(a: AccountState, st: AccountSyncState) -> AccountState:
    return dataclasses.replace(
        a,
        consecutive_failures=st.consecutive_failures,
        last_reason=st.last_reason,
        last_failure_at=st.last_failure_at,
        last_attempt_at=st.last_attempt_at,
        last_live_at=st.last_live_at,
        has_sync_state=True,
    )


@dataclass(frozen=True)
class FleetSnapshot:
    version: int
    accounts: Mapping[int, AccountState]
    failures: Mapping[tuple[int, Reason], int]


@dataclass(frozen=True)
class SyncStatus:
    """Everything but the accounts. `bridge_up` means "the source answers" (written by each cycle and
    between cycles by the prober); `terminal_up` is False when the source answered but no account came
    back live."""

    bridge_up: bool | None = None
    store_up: bool | None = None
    terminal_up: bool | None = None
    last_health: SourceHealth | None = None
    last_probe_at: datetime | None = None
    last_run: SyncRun | None = None
    last_success_at: datetime | None = None
    running: SyncRun | None = None
    runs: Mapping[RunResult, int] = field(default_factory=_counts)  # by result, since process start
    invalid_entries: Mapping[str, int] = field(default_factory=_counts)  # malformed entries, by endpoint
    clock_skew_total: int = 0  # accounts' live data refused for a timestamp too far ahead
    clock_skew_seconds: float | None = None  # largest lead of a source timestamp in the last read
    pruned_total: int = 0  # accounts dropped after leaving the source's listing
    duplicate_accounts: int = 0  # accounts this source lists that another source holds (last listing)


class Fleet:
    def __init__(self) -> None:
        self._snapshot = FleetSnapshot(0, MappingProxyType({}), _counts())
        self._status = SyncStatus()
        self._sources: dict[str, SyncStatus] = {}  # per source, in registration order
        self._claims: dict[int, str] = {}  # account -> the source that listed it first (`claim`)
        self._clients: dict[int, str | None] = {}  # assignments to accounts not in the fleet yet
        self.loaded = False  # the store's accounts are in
        # Sharded (agent.sync.shards): the accounts this agent syncs; the others are mirrored from the store.
        self.owns: Callable[[int], bool] = _everything

    # Reads ---------------------------------------------------------------------------------------
    def snapshot(self) -> FleetSnapshot:
        return self._snapshot

    @property
    def version(self) -> int:
        return self._snapshot.version

    @property
    def status(self) -> SyncStatus:
        return self._status

    # Writes --------------------------------------------------------------------------------------
    def _publish(
        self,
        accounts: dict[int, AccountState] | None = None,
        failures: Counter[tuple[int, Reason]] | None = None,
        *,
        resort: bool = False,
    ) -> FleetSnapshot:
        old = self._snapshot
        acc: Mapping[int, AccountState] = old.accounts
        if accounts is not None:
            if resort:
                accounts = dict(sorted(accounts.items()))
            acc = MappingProxyType(accounts)
        fail = old.failures if failures is None else MappingProxyType(failures)
        self._snapshot = FleetSnapshot(old.version + 1, acc, fail)
        return self._snapshot

    @property
    def sources(self) -> Mapping[str, SyncStatus]:
        """Each source's own status, in registration order (empty: no source registered)."""
        return MappingProxyType(self._sources)

    def register_source(self, name: str) -> None:
        """Give `name` its own status (the `source` label's closed set is known at start)."""
        self._sources.setdefault(name, SyncStatus(store_up=self._status.store_up))
        self._status = _combined(self._sources, self._status)

    def source_status(self, source: str | None) -> SyncStatus:
        return self._status if source is None else self._sources.get(source) or SyncStatus()

    def update_status(self, source: str | None = None, **changes: Any) -> SyncStatus:
        """Change the status of `source` (None: the whole fleet's, for a fleet without sources). The store
        is shared: `store_up` is every source's. The fleet's status is then their combination, the one
        source's status itself when there is one (the single-source agent reads as before)."""
        if source is None:
            self._status = dataclasses.replace(self._status, **changes)
            return self._status
        if source not in self._sources:
            self.register_source(source)
        st = self._sources[source] = dataclasses.replace(self._sources[source], **changes)
        if "store_up" in changes:
            for name, other in self._sources.items():
                if other.store_up is not changes["store_up"]:
                    self._sources[name] = dataclasses.replace(other, store_up=changes["store_up"])
        self._status = _combined(self._sources, self._status)
        return st

    def count_run(self, run: SyncRun, source: str | None = None) -> None:
        """A finished run: counted by result, and the last (successful) run."""
        assert run.result is not None
        runs = Counter(self.source_status(source).runs)
        runs[run.result] += 1
        changes: dict[str, Any] = {"runs": MappingProxyType(runs), "last_run": run}
        if run.result in (RunResult.SUCCESS, RunResult.PARTIAL):
            changes["last_success_at"] = run.finished_at
        self.update_status(source, **changes)

    def count_invalid(self, endpoint: str, n: int, source: str | None = None) -> None:
        entries = Counter(self.source_status(source).invalid_entries)
        entries[endpoint] += n
        self.update_status(source, invalid_entries=MappingProxyType(entries))

    def claim(self, source: str, accounts: Iterable[int]) -> set[int]:
        """`source` listed `accounts`: those no source holds yet become its own (at once, before its
        reads: two sources listing a new login in the same tick cannot both write it); returns those
        another source holds. A login listed by two sources is never merged: the first to list it keeps it
        until it is pruned from the fleet."""
        snap = self._snapshot.accounts
        claims = self._claims
        taken: set[int] = set()
        for account in accounts:
            a = snap.get(account)
            holder = claims.get(account) or (a.source if a is not None else None)
            if holder is None:
                claims[account] = source
            elif holder != source:
                taken.add(account)
        return taken

    def holder(self, account: int) -> str | None:
        """The source holding `account` (None: none has listed it since start)."""
        a = self._snapshot.accounts.get(account)
        return self._claims.get(account) or (a.source if a is not None else None)

    def _from_record(self, r: AccountRecord, stored_source: str | None = None) -> AccountState:
        """A stored account: held by the source its document names (issue 15: after a restart with that
        source dead, its accounts still carry it) when that source is configured; else, with one source,
        by it; else by nobody until a source lists it."""
        a = AccountState.from_record(r)
        if stored_source is not None and stored_source in self._sources:
            a = dataclasses.replace(a, source=stored_source)
        elif len(self._sources) == 1:
            a = dataclasses.replace(a, source=next(iter(self._sources)))
        return a

    def load(
        self,
        records: Iterable[AccountRecord],
        states: Mapping[int, AccountSyncState],
        sources: Mapping[int, str] | None = None,
    ) -> None:
        """The store's accounts at start (`sources`: the source each document names). What this process
        already learnt (while the store was down) wins over what was stored; the client assignment only
        the store knows."""
        accounts = dict(self._snapshot.accounts)
        learnt = set(accounts)
        sources = sources or {}
        for r in records:
            if r.account in learnt:
                if accounts[r.account].client_id != r.client_id:
                    accounts[r.account] = dataclasses.replace(accounts[r.account], client_id=r.client_id)
            elif r.account not in accounts:
                accounts[r.account] = self._from_record(r, sources.get(r.account))
        for account, st in states.items():
            a = accounts.get(account) or AccountState(account=account)
            if not a.has_sync_state:
                accounts[account] = _with_sync_state(a, st)
        for account, client_id in self._clients.items():
            if account in accounts:
                accounts[account] = dataclasses.replace(accounts[account], client_id=client_id)
        self._clients = {a: c for a, c in self._clients.items() if a not in accounts}
        self.loaded = True
        self._publish(accounts, resort=True)

    def refresh(self, records: Iterable[AccountRecord], sources: Mapping[int, str] | None = None) -> bool:
        """Documents other writers put in the store since the load (the seed's backend provisions
        accounts and assigns clients): new accounts join, changed client assignments follow. Publishes
        (a new version) only when something changed; returns whether it did."""
        accounts = self._snapshot.accounts
        changed: dict[int, AccountState] = {}
        sources = sources or {}
        owns = self.owns
        for r in records:
            a = accounts.get(r.account)
            if a is None:
                changed[r.account] = self._from_record(r, sources.get(r.account))
            elif owns is not _everything and not owns(r.account):
                # Another shard syncs it: the store's values are the account's (what the API shows here).
                m = self._from_record(r, sources.get(r.account))
                mirrored = dataclasses.replace(
                    a,
                    values=m.values,
                    data_source=m.data_source,
                    live_data_at=m.live_data_at,
                    updated_at=m.updated_at,
                    client_id=m.client_id,
                    name=m.name or a.name,
                    server=m.server or a.server,
                    source=m.source or a.source,
                )
                if mirrored != a:
                    changed[r.account] = mirrored
            elif a.client_id != r.client_id:
                changed[r.account] = dataclasses.replace(a, client_id=r.client_id)
        if not changed:
            return False
        merged = dict(accounts)
        merged.update(changed)
        self._publish(merged, resort=True)
        return True

    def apply(
        self,
        listed: Sequence[ListedAccount],
        updates: Sequence[AccountUpdate],
        failures: Mapping[int, Reason],
        states: Mapping[int, AccountSyncState],
        source: str | None = None,
    ) -> FleetSnapshot:
        """A cycle's outcome: the listed accounts, what was written for them (updates and their new
        bookkeeping), and the failures to count; new accounts are held by `source`."""
        accounts = dict(self._snapshot.accounts)
        added = False
        clients = self._clients
        for s in listed:
            a = accounts.get(s.account)
            if a is None:
                added = True
                accounts[s.account] = AccountState(
                    account=s.account,
                    name=s.name,
                    server=s.server,
                    client_id=clients.pop(s.account, None),
                    source=source,
                )
            elif (
                (a.name is None and s.name is not None)
                or (a.server is None and s.server is not None)
                or (a.source is None and source is not None)
            ):
                accounts[s.account] = dataclasses.replace(
                    a, name=a.name or s.name, server=a.server or s.server, source=a.source or source
                )
        for u in updates:
            a = accounts[u.account]
            st = states.get(u.account)
            accounts[u.account] = AccountState(
                account=a.account,
                name=a.name or u.name,
                server=a.server or u.server,
                client_id=a.client_id,
                values=merge_values(a.values, u.values),
                data_source=u.data_source.value,
                live_data_at=u.live_data_at if u.live_data_at is not None else a.live_data_at,
                updated_at=u.synced_at,
                consecutive_failures=st.consecutive_failures if st else a.consecutive_failures,
                last_reason=st.last_reason if st else a.last_reason,
                last_failure_at=st.last_failure_at if st else a.last_failure_at,
                last_attempt_at=st.last_attempt_at if st else a.last_attempt_at,
                last_live_at=st.last_live_at if st else a.last_live_at,
                has_sync_state=a.has_sync_state or st is not None,
                source=a.source or source,
            )
        written = {u.account for u in updates}
        for account, st in states.items():
            if account not in written:
                accounts[account] = _with_sync_state(accounts.get(account) or AccountState(account), st)
        counts = None
        if failures:
            counts = Counter(self._snapshot.failures)
            for account, reason in failures.items():
                counts[(account, reason)] += 1
        return self._publish(accounts, counts, resort=added)

    def prune(self, gone: Iterable[int], source: str | None = None) -> int:
        """Drop accounts (and their failure counts) from the fleet; how many were in it (counted as
        pruned by `source`)."""
        snap = self._snapshot
        gone = {a for a in gone if a in snap.accounts}
        if not gone:
            return 0
        accounts = {a: s for a, s in snap.accounts.items() if a not in gone}
        failures = Counter({k: n for k, n in snap.failures.items() if k[0] not in gone})
        for account in gone:
            self._claims.pop(account, None)
        self._publish(accounts, failures)
        self.update_status(source, pruned_total=self.source_status(source).pruned_total + len(gone))
        return len(gone)

    def replace(
        self, accounts: Iterable[AccountState], failures: Mapping[tuple[int, Reason], int] | None = None
    ) -> FleetSnapshot:
        """The whole account part at once, as a new version (benchmarks and tests that stand in for a
        store load and cycles; the agent itself only loads and applies)."""
        counts = Counter(failures or {})
        return self._publish({a.account: a for a in accounts}, counts, resort=True)

    def set_client(self, account: int, client_id: str | None) -> None:
        """The client an account is assigned to (the store holds it; this keeps the fleet in step).
        An account not in the fleet yet gets it when it arrives."""
        a = self._snapshot.accounts.get(account)
        if a is None:
            self._clients[account] = client_id
            return
        if a.client_id != client_id:
            accounts = dict(self._snapshot.accounts)
            accounts[account] = dataclasses.replace(a, client_id=client_id)
            self._publish(accounts)


def _everything(account: int) -> bool:
    return True


def _combined(sources: Mapping[str, SyncStatus], previous: SyncStatus) -> SyncStatus:
    """The fleet's status from its sources': the one source's own when there is one; else up only when
    every source is (down when one is), runs and counters summed, the latest run, the oldest last success
    (when every source has had one: the fleet is only as fresh as its stalest source)."""
    statuses = list(sources.values())
    if not statuses:
        return previous
    if len(statuses) == 1:
        return statuses[0]

    def all_of(values: list[bool | None]) -> bool | None:
        if any(v is False for v in values):
            return False
        return True if values and all(v is True for v in values) else None

    runs: Counter[RunResult] = Counter()
    entries: Counter[str] = Counter()
    for st in statuses:
        runs.update(st.runs)
        entries.update(st.invalid_entries)
    finished = [st.last_run for st in statuses if st.last_run is not None]
    successes = [st.last_success_at for st in statuses]
    probes = [st.last_probe_at for st in statuses if st.last_probe_at is not None]
    skews = [st.clock_skew_seconds for st in statuses if st.clock_skew_seconds is not None]
    return SyncStatus(
        bridge_up=all_of([st.bridge_up for st in statuses]),
        store_up=statuses[0].store_up,
        terminal_up=all_of([st.terminal_up for st in statuses if st.terminal_up is not None] or [None]),
        last_health=statuses[0].last_health,
        last_probe_at=max(probes) if probes else None,
        last_run=max(finished, key=lambda r: r.finished_at or r.started_at) if finished else None,
        last_success_at=None if None in successes else min(s for s in successes if s is not None),
        running=next((st.running for st in statuses if st.running is not None), None),
        runs=MappingProxyType(runs),
        invalid_entries=MappingProxyType(entries),
        clock_skew_total=sum(st.clock_skew_total for st in statuses),
        clock_skew_seconds=max(skews) if skews else None,
        pruned_total=sum(st.pruned_total for st in statuses),
        duplicate_accounts=sum(st.duplicate_accounts for st in statuses),
    )
