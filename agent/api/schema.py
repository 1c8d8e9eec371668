"""The API's public shapes, defined once as pydantic models.

`Account` is the allow-list: the serializer copies exactly its fields, in its order, and nothing else
(agent.api.serialize); the OpenAPI document is generated from these models' JSON schemas
(agent.api.openapi). Responses are not validated through pydantic at run time (the serializer is the
measured fast path); the schemathesis test checks the live answers against the generated document.

Every field is required (present, possibly null): a client never has to guess whether a missing key
means null. No model allows extra properties.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import SkipJsonSchema

from agent.domain.accounts import AccountDocument, Reason
from agent.domain.freshness import STATES, State
from agent.domain.runs import FetchMode, RunResult, Trigger
from agent.store.checks import CLIENT_ID_MAX_LENGTH, CLIENT_ID_PATTERN


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional_key(**kwargs: Any) -> Any:
    """A key that may be absent (never null): not required, no default in the document."""
    return Field(default=None, json_schema_extra=_no_default, **kwargs)


class Freshness(Schema):
    state: State
    age_seconds: float | None = Field(ge=0)


class Account(AccountDocument):
    """Only the document's declared fields (agent.domain.accounts.AccountDocument) and the freshness
    computed at request time; never credentials."""

    freshness: Freshness


class Thresholds(Schema):
    acceptable_after: float
    degraded_after: float
    critical_after: float


class AccountList(Schema):
    accounts: list[Account]
    count: int = Field(ge=0, description="accounts in this answer (this page, when paged)")
    thresholds: Thresholds
    generated_at: datetime
    next_cursor: str = optional_key(
        pattern="^[0-9]{1,19}$",
        description="only when `limit` was given and more accounts follow: the `cursor` of the next page",
    )


class ClientAccounts(Schema):
    accounts: list[Account]
    count: int = Field(ge=0)
    generated_at: datetime


class AdminAccounts(Schema):
    accounts: list[Account]
    count: int = Field(ge=0)
    generated_at: datetime


class CurrencyTotal(Schema):
    currency: str
    accounts: int = Field(ge=0)
    balance: float
    equity: float
    profit: float


class Portfolio(Schema):
    accounts: list[Account]
    count: int = Field(ge=0)
    totals: list[CurrencyTotal] = Field(
        description="sums of the stored values per currency, over the accounts that have a currency, "
        "balance, equity and profit"
    )
    accounts_summed: int = Field(ge=0)
    accounts_not_summed: int = Field(ge=0)
    not_summed: list[int] = Field(description="listed, not in totals")
    generated_at: datetime


class SyncRun(Schema):
    run_id: str
    trigger: Trigger
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    result: RunResult | None
    accounts_total: int = Field(ge=0)
    synced_live: int = Field(ge=0)
    synced_stored: int = Field(ge=0)
    failed: int = Field(ge=0)
    failures: dict[str, Reason] = Field(description="account -> failure reason (a closed set)")
    error: str | None
    source: str | None = Field(description="the source the run read its accounts from (`bridge`)")
    fetch_mode: FetchMode | None = Field(description="how it read them; null when it read none")
    bridge_batch: bool = Field(description="fetch_mode is batch (kept for existing clients)")
    summary: str


class SyncRunPage(Schema):
    runs: list[SyncRun]
    total: int = Field(ge=0)
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)


class SyncResult(Schema):
    status: RunResult
    accounts_synced: int = Field(ge=0)
    total_accounts: int = Field(ge=0)
    run_id: str
    result: SyncRun
    duration: float | None


class ErrorBody(Schema):
    code: str
    message: str
    run_id: str | SkipJsonSchema[None] = optional_key()


class Error(Schema):
    error: ErrorBody


class SyncRunningBody(Schema):
    code: Literal["sync_running"]
    message: str
    run_id: str


class SyncRunning(Schema):
    error: SyncRunningBody


class HealthVpsApi(Schema):
    reachable: bool | None
    response_time: float | None
    status: str | None


class HealthDataFreshness(Schema):
    oldest_update: str | None = Field(examples=["2 minutes ago"])
    staleness: State | None
    age_seconds: float | None = Field(ge=0)


class HealthLastSync(Schema):
    time: datetime | None
    success: bool | None
    accounts_synced: str | None = Field(examples=["7/7"])
    duration: float | None
    run_id: str | None
    result: RunResult | None


class HealthConnection(Schema):
    """One MetaAPI account connection (docs/metaapi.md): no MetaAPI id, no secret."""

    account: int
    connected: bool
    connected_to_broker: bool
    synchronized: bool
    last_packet_age_seconds: float | None
    connections_created: int = Field(ge=0)
    recreated: int = Field(ge=0)
    consecutive_failures: int = Field(ge=0)
    last_problem: str | None
    retry_in_seconds: float | None


class HealthSource(Schema):
    """One of the agent's sources (`[[sources]]`): reachable at its last probe or cycle, the accounts it
    holds, its last cycle's result; a MetaAPI source's connections."""

    name: str
    kind: str
    up: bool | None
    accounts: int = Field(ge=0)
    last_result: RunResult | None
    connections: list[HealthConnection] | SkipJsonSchema[None] = optional_key()


class HealthShardConflict(Schema):
    """Another live shard whose lease conflicts with this one's (docs/scaling.md)."""

    kind: Literal["duplicate_index", "count_mismatch"]
    instance: str
    index: int = Field(ge=0)
    count: int = Field(ge=1)


class HealthShard(Schema):
    """This agent as a shard (`MT5_AGENT_SHARD=i/N`): its lease in the shared store and its conflicts."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    instance: str
    lease_up: bool | None
    live_shards: int = Field(ge=0, description="live leases seen at the last heartbeat, this one included")
    owned_accounts: int = Field(ge=0, description="known accounts with login % count == index")
    conflicts: list[HealthShardConflict]


class Health(Schema):
    status: Literal["healthy", "degraded", "unhealthy"]
    vps_api: HealthVpsApi
    data_freshness: HealthDataFreshness
    last_sync: HealthLastSync
    issues: list[str]
    checked_at: datetime
    sources: list[HealthSource] | SkipJsonSchema[None] = optional_key(
        description="each source, when the agent watches several or a MetaAPI one"
    )
    shard: HealthShard | SkipJsonSchema[None] = optional_key(description="when the agent runs as a shard")


class StatusBridge(Schema):
    up: bool | None
    status: str | None
    response_time: float | None


class StatusStore(Schema):
    up: bool


class StatusLastRun(Schema):
    time: datetime
    result: RunResult | None
    accounts_synced: int = Field(ge=0)
    total_accounts: int = Field(ge=0)
    duration: float | None


class StatusSync(Schema):
    running: bool
    last_success_at: datetime | None
    last: StatusLastRun | None


# One count per freshness state, named by the states themselves.
StateCounts: type[Schema] = create_model(  # type: ignore[call-overload]
    "StateCounts", __base__=Schema, **{s.value: (int, Field(ge=0)) for s in STATES}
)


class StatusAccounts(Schema):
    total: int = Field(ge=0)
    by_state: StateCounts  # type: ignore[valid-type]


class Status(Schema):
    time: datetime
    bridge: StatusBridge
    store: StatusStore
    sync: StatusSync
    accounts: StatusAccounts | None
    thresholds: Thresholds


class ClientAssignment(Schema):
    """The body of `PUT /api/admin/mt5/accounts/{account}/client`."""

    client_id: str = Field(
        min_length=1,
        max_length=CLIENT_ID_MAX_LENGTH,
        pattern=CLIENT_ID_PATTERN,
        description="printable ASCII other than '/' (the client paths cannot carry one)",
        examples=["client_alejandro"],
    )


class Alive(Schema):
    status: Literal["alive"]


class Ready(Schema):
    ready: bool
    problems: list[str]


# Names the generated document gives the enums (pydantic would use the class names).
ENUM_NAMES: dict[str, str] = {"State": "FreshnessState"}

ACCOUNT_FIELDS: tuple[str, ...] = tuple(Account.model_fields)
