"""What the telemetry reads of the fleet, and the one place it gets it from.

The collector reads one read model: a snapshot of the accounts (immutable, with a version that moves
whenever accounts or failure counts change) and the sync status. The protocols below name only what
the metrics use, in the shape of `agent.sync.fleet` (`FleetSnapshot`, `SyncStatus`).

`fleet_of(service)` is the seam: the service's `Fleet` when it has one; otherwise (SHIM(issue 11), until
the fleet lands) an adapter over the old `SyncService.state` that presents the same shape.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agent.models import AccountValues, Reason, RunResult, SyncRun


class AccountRow(Protocol):
    """One account as the metrics show it."""

    @property
    def account(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    @property
    def server(self) -> str | None: ...
    @property
    def values(self) -> AccountValues | None: ...
    @property
    def data_source(self) -> str | None: ...
    @property
    def live_data_at(self) -> datetime | None: ...
    @property
    def consecutive_failures(self) -> int: ...


class Snapshot(Protocol):
    """The accounts at one instant; never mutated (safe to render on a worker thread)."""

    @property
    def version(self) -> Hashable: ...
    @property
    def accounts(self) -> Mapping[int, AccountRow]: ...
    @property
    def failures(self) -> Mapping[tuple[int, Reason], int]: ...


class Status(Protocol):
    """Everything but the accounts (changes at every probe; not part of the snapshot's version)."""

    @property
    def runs(self) -> Mapping[RunResult, int]: ...
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def last_run(self) -> SyncRun | None: ...
    @property
    def running(self) -> SyncRun | None: ...
    @property
    def bridge_up(self) -> bool | None: ...
    @property
    def store_up(self) -> bool | None: ...
    @property
    def terminal_up(self) -> bool | None: ...
    @property
    def invalid_entries(self) -> Mapping[str, int]: ...
    @property
    def clock_skew_total(self) -> int: ...
    @property
    def clock_skew_seconds(self) -> float | None: ...
    @property
    def pruned_total(self) -> int: ...


class FleetReader(Protocol):
    def snapshot(self) -> Snapshot: ...
    @property
    def status(self) -> Status: ...


def fleet_of(service: Any) -> FleetReader:
    """The read model of `service` (a SyncService)."""
    fleet = getattr(service, "fleet", None)
    if fleet is not None:
        return fleet  # type: ignore[no-any-return]
    return _StateAdapter(service)


# SHIM(issue 11): the pre-fleet SyncService.state, presented as a fleet. -------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    account: int
    name: str | None = None
    server: str | None = None
    values: AccountValues | None = None
    data_source: str | None = None
    live_data_at: datetime | None = None
    consecutive_failures: int = 0


@dataclass(frozen=True)
class _Snapshot:
    version: Hashable
    accounts: Mapping[int, AccountRow]
    failures: Mapping[tuple[int, Reason], int]


class _StateAdapter:
    """`SyncService.state` (mutable, bumped `version`) as immutable snapshots, rebuilt when its version,
    its account, sync-state or failure counts, or the state object itself change."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self._state: Any = None
        self._last: _Snapshot | None = None

    @property
    def status(self) -> Status:
        return self._service.state  # type: ignore[no-any-return]

    def snapshot(self) -> Snapshot:
        state = self._service.state
        key = (state.version, len(state.accounts), len(state.sync_states), len(state.failures))
        if self._last is None or self._last.version != key or self._state is not state:
            accounts, sync_states = state.accounts, state.sync_states
            rows: dict[int, AccountRow] = {}
            for account in sorted(set(accounts) | set(sync_states)):
                view, st = accounts.get(account), sync_states.get(account)
                n = st.consecutive_failures if st else 0
                if view is None:
                    rows[account] = _Row(account, consecutive_failures=n)
                else:
                    rows[account] = _Row(
                        account, view.name, view.server, view.values, view.data_source, view.live_data_at, n
                    )
            self._state, self._last = state, _Snapshot(key, rows, dict(state.failures))
        return self._last
