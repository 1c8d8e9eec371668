"""SHIM(issue 11): the pre-fleet `SyncService.state` shape, read through to the fleet.

Kept only while the metrics collector, the API and their tests move to `agent.sync.fleet`; the lead
removes it. `accounts`, `sync_states` and `failures` are plain dicts rebuilt once per fleet version (a
caller that mutates them sees its change until the next version); the status attributes read and
write `Fleet.status`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.domain.accounts import AccountSyncState, AccountValues, Reason
from agent.domain.runs import RunResult
from agent.sync.fleet import AccountState, Fleet


@dataclass
class AccountView:
    """SHIM(issue 11): the old mutable account view; `AccountState` has the same attributes."""

    account: int
    name: str | None = None
    server: str | None = None
    values: AccountValues | None = None
    data_source: str | None = None
    live_data_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def currency(self) -> str | None:
        return self.values.currency if self.values else None


def _status_property(name: str) -> property:
    def get(self: SyncState) -> Any:
        return getattr(self._fleet.status, name)

    def put(self: SyncState, value: Any) -> None:
        self._fleet.update_status(**{name: value})

    return property(get, put)


class SyncState:
    def __init__(self, fleet: Fleet | None = None) -> None:
        self._fleet = fleet if fleet is not None else Fleet()
        self._seen = -1
        self._bump = 0
        self._accounts: dict[int, AccountState | AccountView] = {}
        self._sync_states: dict[int, AccountSyncState] = {}
        self._failures: Counter[tuple[int, Reason]] = Counter()

    def _refresh(self) -> None:
        snap = self._fleet.snapshot()
        if snap.version != self._seen:
            self._seen = snap.version
            self._bump = 0
            self._accounts = dict(snap.accounts)
            self._sync_states = {a: s.sync_state() for a, s in snap.accounts.items() if s.has_sync_state}
            self._failures = Counter(snap.failures)

    @property
    def accounts(self) -> dict[int, AccountState | AccountView]:
        self._refresh()
        return self._accounts

    @accounts.setter
    def accounts(self, value: dict[int, AccountState | AccountView]) -> None:
        self._refresh()
        self._accounts = value

    @property
    def sync_states(self) -> dict[int, AccountSyncState]:
        self._refresh()
        return self._sync_states

    @sync_states.setter
    def sync_states(self, value: dict[int, AccountSyncState]) -> None:
        self._refresh()
        self._sync_states = value

    @property
    def failures(self) -> Counter[tuple[int, Reason]]:
        self._refresh()
        return self._failures

    @failures.setter
    def failures(self, value: Counter[tuple[int, Reason]]) -> None:
        self._refresh()
        self._failures = value

    @property
    def version(self) -> int:
        return self._fleet.version + self._bump

    @version.setter
    def version(self, value: int) -> None:
        self._refresh()
        self._bump = value - self._fleet.version

    @property
    def loaded(self) -> bool:
        return self._fleet.loaded

    @property
    def runs(self) -> Counter[RunResult]:
        return Counter(self._fleet.status.runs)

    @property
    def invalid_entries(self) -> Counter[str]:
        return Counter(self._fleet.status.invalid_entries)

    bridge_up = _status_property("bridge_up")
    store_up = _status_property("store_up")
    terminal_up = _status_property("terminal_up")
    last_health = _status_property("last_health")
    last_probe_at = _status_property("last_probe_at")
    last_run = _status_property("last_run")
    last_success_at = _status_property("last_success_at")
    running = _status_property("running")
    clock_skew_total = _status_property("clock_skew_total")
    clock_skew_seconds = _status_property("clock_skew_seconds")
    pruned_total = _status_property("pruned_total")
