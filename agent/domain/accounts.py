"""Accounts as the agent knows them: values, updates, stored records, sync bookkeeping, and what a
source gives for one account (a snapshot or a read failure). Plain types, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


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


class FieldRole(StrEnum):
    """What a sync does with an account document's field (DESIGN.md section 5)."""

    INSERT_ONLY = "insert_only"  # written when a sync creates the document ($setOnInsert), never after
    VALUE = "value"  # read from the terminal, $set by every sync that got it
    SYNC_META = "sync_meta"  # when and how the sync wrote it, $set by every sync


class AccountDocument(BaseModel):
    """The public fields of an account document, defined once, in the order the API shows them.

    Everything else is derived from it: the store's synced and insert-only fields (below), the API's
    allow-list and its OpenAPI schema (agent.api.schema). A field not declared here never leaves the store
    (credentials, client_id, fund_type...). Not used to validate at run time: the dataclasses below are
    the fast containers, and a test holds them to this model."""

    model_config = ConfigDict(extra="forbid")

    account: int = Field(ge=1, description="MT5 login")
    name: Annotated[str | None, FieldRole.INSERT_ONLY]
    server: Annotated[str | None, FieldRole.INSERT_ONLY]
    balance: Annotated[float | None, FieldRole.VALUE]
    equity: Annotated[float | None, FieldRole.VALUE]
    profit: Annotated[float | None, FieldRole.VALUE]
    margin: Annotated[float | None, FieldRole.VALUE]
    margin_free: Annotated[float | None, FieldRole.VALUE]
    margin_level: Annotated[float | None, FieldRole.VALUE]
    leverage: Annotated[int | None, FieldRole.VALUE]
    currency: Annotated[str | None, FieldRole.VALUE]
    trade_allowed: Annotated[bool | None, FieldRole.VALUE]
    updated_at: Annotated[datetime | None, FieldRole.SYNC_META] = Field(
        description="when a sync last wrote this account"
    )
    vps_sync_timestamp: Annotated[datetime | None, FieldRole.SYNC_META]
    synced_from_vps: Annotated[bool | None, FieldRole.SYNC_META]
    data_source: Annotated[DataSource | None, FieldRole.SYNC_META] = Field(
        description=f"{DataSource.LIVE.value} (live terminal data) or {DataSource.STORED.value} (the "
        "bridge's stored fallback, which does not reset freshness); null before any sync"
    )
    live_data_at: Annotated[datetime | None, FieldRole.SYNC_META] = Field(
        description="when the terminal last gave live data"
    )


def fields_with(role: FieldRole) -> tuple[str, ...]:
    return tuple(name for name, f in AccountDocument.model_fields.items() if role in f.metadata)


# The fields a sync writes into an account document ($set), and nothing else (DESIGN.md section 5).
VALUE_FIELDS: tuple[str, ...] = fields_with(FieldRole.VALUE)
SYNC_META_FIELDS: tuple[str, ...] = fields_with(FieldRole.SYNC_META)
SYNCED_FIELDS: tuple[str, ...] = VALUE_FIELDS + SYNC_META_FIELDS
# Written only when a sync creates a document ($setOnInsert); an existing value is never overwritten.
INSERT_ONLY_FIELDS: tuple[str, ...] = fields_with(FieldRole.INSERT_ONLY)


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


def merge_values(old: AccountValues | None, new: AccountValues) -> AccountValues:
    """What an account holds after `new` is written over `old`: a write sets only the fields that came
    (None is "not sent"), so the others keep their value. The stores' $set and the fleet both follow it."""
    if old is None:
        return new
    fresh = [getattr(new, f) for f in VALUE_FIELDS]
    if not any(v is None for v in fresh):
        return new  # every field came (our bridge sends them all): nothing to keep from `old`
    merged = {f: v if v is not None else getattr(old, f) for f, v in zip(VALUE_FIELDS, fresh, strict=True)}
    return AccountValues(**merged)


class StopOutMode(StrEnum):
    """MT5's margin_so_mode: what the broker's margin call and stop-out levels are measured in."""

    PERCENT = "percent"  # margin level, percent (equity / used margin * 100)
    MONEY = "money"  # equity, in the account currency


@dataclass(frozen=True, slots=True)
class BrokerLevels:
    """The broker's margin call and stop-out levels of an account, as its terminal reports them (MT5's
    margin_so_call, margin_so_so), validated: finite, 0 < stop_out <= margin_call. Kept in memory only,
    never stored: they are the broker's settings, read again with every live read."""

    mode: StopOutMode
    margin_call: float
    stop_out: float

    def ratios(self) -> tuple[float, float] | None:
        """(margin call, stop-out) as margin level ratios (percent / 100), what
        mt5_account_margin_level_ratio is compared with; None in money mode (not a margin level)."""
        if self.mode is not StopOutMode.PERCENT:
            return None
        return self.margin_call / 100.0, self.stop_out / 100.0


@dataclass(frozen=True)
class AccountSnapshot:
    """What a source gave for one account: live values, or (the seed's fallback) stored values."""

    values: AccountValues
    live: bool
    read_at: datetime | None  # terminal read time for live data, never later than the receive time
    name: str | None = None
    server: str | None = None
    ahead_seconds: float = 0.0  # how far the source timestamp was ahead of the receive time (tolerated)
    broker_levels: BrokerLevels | None = None  # live reads of a terminal that reports them; memory only


@dataclass(frozen=True)
class ReadFailure:
    """One account a source could not read, with a reason from the closed set (never free text in a
    label); `message` is for logs only."""

    reason: Reason
    message: str
    ahead_seconds: float | None = None  # set when live data was refused for clock skew
