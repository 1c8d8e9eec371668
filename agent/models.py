"""Typed records that move between the sync cycle, the stores, the API and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


def to_ms(dt: datetime) -> datetime:
    """Truncate to milliseconds, the precision both stores keep (BSON dates), so memory and store agree."""
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


class DataSource(StrEnum):
    LIVE = "VPS_LIVE_MT5"
    STORED = "VPS_STORED"


class Reason(StrEnum):
    """Closed set of per-account failure reasons (DESIGN.md section 7); never free text in a label.

    `login_failed` and `no_live_data` are told apart from `http_status` because they call for different
    actions: credentials (the terminal could not log in to the account) versus the terminal itself
    (disconnected from the trade server, or it gave no account data).
    """

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_STATUS = "http_status"
    INVALID_PAYLOAD = "invalid_payload"
    ACCOUNT_MISMATCH = "account_mismatch"
    NOT_FOUND = "not_found"
    STORE = "store"
    LOGIN_FAILED = "login_failed"
    NO_LIVE_DATA = "no_live_data"


REASONS: tuple[Reason, ...] = tuple(Reason)


class RunResult(StrEnum):
    SUCCESS = "success"  # every account synced live
    PARTIAL = "partial"  # some accounts live, others failed or came back as stored data only
    # Nothing written (store down, every account failed), or no account gave live data: a terminal
    # that is down while its bridge serves stored data for every account is not a success.
    FAILED = "failed"
    SKIPPED = "skipped"  # bridge unhealthy or unreachable: cycle skipped, nothing changed


RUN_RESULTS: tuple[RunResult, ...] = tuple(RunResult)

# The fields a sync writes into an account document ($set), and nothing else (DESIGN.md section 5).
VALUE_FIELDS: tuple[str, ...] = (
    "balance",
    "equity",
    "profit",
    "margin",
    "margin_free",
    "margin_level",
    "leverage",
    "currency",
    "trade_allowed",
)
SYNC_META_FIELDS: tuple[str, ...] = (
    "updated_at",
    "synced_from_vps",
    "vps_sync_timestamp",
    "data_source",
    "live_data_at",
)
SYNCED_FIELDS: tuple[str, ...] = VALUE_FIELDS + SYNC_META_FIELDS
# Written only when a sync creates a document ($setOnInsert); an existing value is never overwritten.
INSERT_ONLY_FIELDS: tuple[str, ...] = ("name", "server")


@dataclass(frozen=True)
class AccountValues:
    """Values read from the terminal, already validated (finite numbers, right types).

    A field the bridge did not send is None and is not written: the seed's bridge sends only some
    fields, and a missing value is never replaced by a default.
    """

    balance: float
    equity: float | None = None
    profit: float | None = None
    margin: float | None = None
    margin_free: float | None = None
    margin_level: float | None = None
    leverage: int | None = None
    currency: str | None = None
    trade_allowed: bool | None = None


@dataclass(frozen=True)
class AccountUpdate:
    """One account's write for one cycle."""

    account: int
    values: AccountValues
    data_source: DataSource
    synced_at: datetime
    live_data_at: datetime | None  # None for VPS_STORED: the fallback never resets freshness
    name: str | None = None
    server: str | None = None

    def set_fields(self) -> dict[str, Any]:
        doc: dict[str, Any] = {f: v for f in VALUE_FIELDS if (v := getattr(self.values, f)) is not None}
        doc.update(
            updated_at=self.synced_at,
            synced_from_vps=True,
            vps_sync_timestamp=self.synced_at,
            data_source=self.data_source.value,
        )
        if self.live_data_at is not None:
            doc["live_data_at"] = self.live_data_at
        return doc

    def insert_fields(self) -> dict[str, Any]:
        return {k: v for k in INSERT_ONLY_FIELDS if (v := getattr(self, k)) is not None}


@dataclass
class AccountRecord:
    """An account as read from the store, built from an allow-list: credentials never get in here."""

    account: int
    name: str | None = None
    server: str | None = None
    client_id: str | None = None  # used for access checks; not part of public responses by default
    balance: float | None = None
    equity: float | None = None
    profit: float | None = None
    margin: float | None = None
    margin_free: float | None = None
    margin_level: float | None = None
    leverage: int | None = None
    currency: str | None = None
    trade_allowed: bool | None = None
    updated_at: datetime | None = None
    synced_from_vps: bool | None = None
    vps_sync_timestamp: datetime | None = None
    data_source: str | None = None
    live_data_at: datetime | None = None


RECORD_FIELDS: tuple[str, ...] = tuple(AccountRecord.__dataclass_fields__)


@dataclass
class AccountSyncState:
    """Per-account sync bookkeeping, kept apart from the account documents so a sync writes only
    the contract's fields there; persisted so counts survive a restart."""

    account: int
    consecutive_failures: int = 0
    last_reason: Reason | None = None
    last_failure_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_live_at: datetime | None = None


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
    bridge_batch: bool = False

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
