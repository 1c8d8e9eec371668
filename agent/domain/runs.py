"""Sync runs: one record per cycle (`mt5_sync_runs`), and how it ended. Plain types, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

FetchMode = Literal["batch", "per_account"]
FETCH_MODES: tuple[FetchMode, ...] = ("batch", "per_account")


class Trigger(StrEnum):
    """What started a sync run: every value any caller of `SyncService.run_cycle` passes (`SyncRun.trigger`
    stays a plain string in stored runs; this is the closed set the API documents)."""

    SCHEDULE = "schedule"
    MANUAL = "manual"  # POST /api/admin/sync-from-vps
    CLI = "cli"  # `mt5-agent sync-once`
    BENCH = "bench"  # the benchmarks in bench/


class RunResult(StrEnum):
    SUCCESS = "success"  # every account synced live
    PARTIAL = "partial"  # some accounts live, others failed or came back as stored data only
    # Nothing written (store down, every account failed), or no account gave live data: a terminal
    # that is down while its bridge serves stored data for every account is not a success.
    FAILED = "failed"
    SKIPPED = "skipped"  # bridge unhealthy or unreachable: cycle skipped, nothing changed


RUN_RESULTS: tuple[RunResult, ...] = tuple(RunResult)


class StopReason(StrEnum):
    """Why a cycle stopped before syncing its accounts (None: it ran through). Callers decide on this,
    never on `error`, which is text for people."""

    SOURCE = "source"  # the source was unavailable: nothing read (result skipped)
    ACCOUNT_LIST = "account_list"  # the source could not list its accounts
    STORE = "store"  # the store could not take the cycle's writes
    CYCLE = "cycle"  # an unexpected error, or the cycle was interrupted


@dataclass
class SyncRun:
    """One cycle's record in `mt5_sync_runs`."""

    run_id: str
    started_at: datetime
    trigger: str = "schedule"
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    result: RunResult | None = None
    accounts_total: int = 0
    synced_live: int = 0
    synced_stored: int = 0
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # account (as str) -> Reason value
    error: str | None = None
    stopped: StopReason | None = None
    # Kept for the stored documents and the API (issue 11): True when the batch read answered. It is
    # derived from `fetch_mode`; a document written before `fetch_mode` existed derives it instead.
    bridge_batch: bool = False
    source: str | None = None  # the source's name (`bridge` for MT5_AGENT_BRIDGE_URL)
    fetch_mode: FetchMode | None = None  # how the accounts were read; None when none were

    def __post_init__(self) -> None:
        if self.fetch_mode is None and self.bridge_batch:
            self.fetch_mode = "batch"

    def set_fetch(self, source: str, mode: FetchMode) -> None:
        """Record where and how this run read its accounts (keeps `bridge_batch` in step)."""
        self.source = source
        self.fetch_mode = mode
        self.bridge_batch = mode == "batch"

    def summary_line(self) -> str:
        dur = f"{self.duration_seconds:.2f}s" if self.duration_seconds is not None else "?"
        ok = self.synced_live + self.synced_stored
        if self.result is RunResult.SKIPPED:
            return f"sync skipped: {self.error or 'bridge unavailable'} after {dur}"
        line = f"sync complete: {ok}/{self.accounts_total} accounts synced in {dur}"
        extras = []
        if self.synced_stored:
            extras.append(f"{self.synced_stored} from stored data")
        if self.failed:
            extras.append(f"{self.failed} failed")
        if self.error:
            extras.append(self.error)
        return line + (f" ({'; '.join(extras)})" if extras else "")
