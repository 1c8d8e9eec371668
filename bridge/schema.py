"""The bridge's response shapes, defined once as pydantic models; bridge.openapi generates the document's
schemas from them. Responses are built by bridge.api as plain dicts (not validated at run time); tests
check real answers against the generated schemas.

Objects stay open (no `additionalProperties: false`): this is the seed's API, and a client of it must
tolerate fields it does not know. A key that may be absent is declared with `optional_key()`: not
required, and never null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema

MAX_LOGIN = 2**63 - 1
ISO_DESCRIPTION = "ISO-8601 UTC, e.g. 2025-10-24T15:53:19.571Z"

Login = Annotated[int, Field(ge=1, le=MAX_LOGIN)]
Instant = Annotated[datetime, Field(description=ISO_DESCRIPTION)]
Feature = Literal["batch", "positions", "positions_batch", "rates"]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def optional_key(**kwargs: Any) -> Any:
    """A key that may be absent (never null): not required, no default in the document."""
    return Field(default=None, json_schema_extra=_no_default, **kwargs)


class Schema(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorDetail(Schema):
    code: str
    message: str


class ErrorBody(Schema):
    code: str = Field(
        description="stable machine code",
        examples=[
            "bad_account_id",
            "bad_request",
            "unauthorized",
            "unknown_account",
            "not_found",
            "terminal_unavailable",
            "account_mismatch",
            "login_failed",
            "terminal_timeout",
            "unknown_symbol",
        ],
    )
    message: str


class Error(Schema):
    error: ErrorBody


class LiveData(Schema):
    """MT5 account_info() read live; login always equals the account asked for"""

    login: Login
    name: str
    server: str
    currency: str
    leverage: int
    balance: float | None
    equity: float | None
    profit: float | None
    margin: float | None
    margin_free: float | None
    margin_level: float | None = Field(description="equity / margin * 100; 0 when margin is 0")
    margin_so_mode: Literal["percent", "money"] | None = Field(
        description="MT5 margin_so_mode: how the broker's two levels below are given (percent of margin "
        "level, or money of equity); null when the terminal reports a mode MT5 does not define"
    )
    margin_so_call: float | None = Field(description="the broker's margin call level (MT5 margin_so_call)")
    margin_so_so: float | None = Field(description="the broker's stop-out level (MT5 margin_so_so)")
    trade_allowed: bool
    timestamp: datetime = Field(description="UTC time the terminal was read")


class StoredData(Schema):
    """the last values this bridge read for the account before this request (in memory)"""

    balance: float | None
    equity: float | None
    profit: float | None
    margin: float | None
    margin_free: float | None
    margin_level: float | SkipJsonSchema[None] | None = optional_key()
    leverage: int | SkipJsonSchema[None] = optional_key()
    currency: str
    trade_allowed: bool | SkipJsonSchema[None] = optional_key()
    timestamp: Instant


class AccountInfoResponse(Schema):
    account_id: Login
    live_data: LiveData | None
    stored_data: StoredData | None
    live_error: ErrorDetail | SkipJsonSchema[None] = optional_key(description="why live_data is null")


class BalanceResponse(Schema):
    account_id: Login
    balance: float | None
    equity: float | None
    profit: float | None
    currency: str
    timestamp: Instant


class Deal(Schema):
    """One deal (MT5 history_deals_get). Every enum value is MetaQuotes' own."""

    ticket: int = Field(description="deal ticket, unique per account, grows with time")
    order: int = Field(description="ticket of the order that made the deal (0 for a balance operation)")
    time: Instant = Field(description=f"deal time converted from broker time to UTC; {ISO_DESCRIPTION}")
    type: int = Field(description="MT5 DEAL_TYPE_* (0 buy, 1 sell, 2 balance: deposit or withdrawal, ...)")
    entry: int = Field(description="MT5 DEAL_ENTRY_* (0 in, 1 out, 2 inout: a reversal, 3 out_by)")
    volume: float | None = Field(description="lots")
    price: float | None
    commission: float | None = Field(description="account currency, negative when charged")
    swap: float | None = Field(description="account currency; a position's swap is paid on its closing deal")
    profit: float | None = Field(
        description="realised profit (an OUT or INOUT deal), or a balance operation's amount"
    )
    fee: float | None
    symbol: str = Field(description="empty for a balance operation")
    comment: str
    position_id: int = Field(description="identifier of the position the deal belongs to (0: none)")
    magic: int = Field(description="expert advisor id (0: manual)")
    reason: int = Field(
        description="MT5 DEAL_REASON_* (0 client, 1 mobile, 2 web, 3 expert, 4 sl, 5 tp, 6 stop out, ...)"
    )


class TradesResponse(Schema):
    account_id: Login
    from_: Instant = Field(alias="from")
    to: Instant
    deals: list[Deal]


class Position(Schema):
    """One open position (MT5 positions_get). A trade is identified by `identifier`, which never changes
    (the ticket can). Every enum value is MetaQuotes' own."""

    ticket: int
    time: Instant = Field(description=f"open time converted from broker time to UTC; {ISO_DESCRIPTION}")
    time_update: Instant = Field(description=f"last change (volume, SL/TP, reversal), UTC; {ISO_DESCRIPTION}")
    type: int = Field(description="MT5 POSITION_TYPE_* (0 buy, 1 sell)")
    magic: int = Field(description="expert advisor id (0: manual)")
    identifier: int = Field(description="position identifier: stable for the position's whole life")
    reason: int = Field(description="MT5 POSITION_REASON_* (0 client, 1 mobile, 2 web, 3 expert)")
    volume: float | None = Field(description="lots")
    price_open: float | None = Field(description="volume-weighted open price")
    sl: float | None = Field(description="stop loss price, 0 when none")
    tp: float | None = Field(description="take profit price, 0 when none")
    price_current: float | None
    swap: float | None = Field(description="swap accumulated so far, account currency")
    profit: float | None = Field(description="floating profit, account currency, swap excluded")
    symbol: str
    comment: str


class PositionsResponse(Schema):
    account_id: Login
    timestamp: Instant
    positions: list[Position]


class AccountSummary(Schema):
    account: Login
    name: str | None
    server: str
    currency: str | None
    balance: float | None = Field(description="last known; null before the bridge first read it")
    equity: float | None
    terminal: str
    updated_at: Instant | None


class SummaryResponse(Schema):
    accounts: list[AccountSummary]


class LiveAccountEntry(AccountInfoResponse):
    """same as /account/{id}/info"""


class LiveFailedEntry(Schema):
    """this account failed; status is what its own call would have returned"""

    account_id: int
    error: ErrorDetail
    status: int


def _one_of(schema: dict[str, Any]) -> None:
    schema["oneOf"] = schema.pop("anyOf")  # exactly one: an entry either has data or failed


class LiveEntry(RootModel[LiveAccountEntry | LiveFailedEntry]):
    model_config = ConfigDict(json_schema_extra=_one_of)


class LiveBatchResponse(Schema):
    timestamp: Instant
    accounts: list[LiveEntry]


class PositionsEntry(RootModel[PositionsResponse | LiveFailedEntry]):
    """same as /account/{id}/positions, or this account's failure"""

    model_config = ConfigDict(json_schema_extra=_one_of)


class PositionsBatchResponse(Schema):
    timestamp: Instant
    accounts: list[PositionsEntry]


class Mt5Status(Schema):
    available: bool
    terminal_info: dict[str, Any] | SkipJsonSchema[None] = optional_key(description="only with a valid token")


class Terminals(Schema):
    """only with a valid token"""

    total: int
    healthy: int
    items: list[dict[str, Any]] | SkipJsonSchema[None] = optional_key()


class Bar(Schema):
    """One bar (MT5 copy_rates_from_pos), its open time converted from broker time to UTC."""

    time: Instant
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    tick_volume: int


class RatesResponse(Schema):
    account_id: Login
    symbol: str
    timeframe: Literal["M1", "M5", "M15", "M30", "H1", "H4", "D1"]
    bars: list[Bar] = Field(description="oldest first; the last one is the bar in progress")


class Health(Schema):
    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: Instant
    mt5: Mt5Status
    features: list[Feature]
    terminals: Terminals | SkipJsonSchema[None] = optional_key()


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Error,
    ErrorDetail,
    LiveData,
    StoredData,
    AccountInfoResponse,
    BalanceResponse,
    Deal,
    TradesResponse,
    Position,
    PositionsResponse,
    AccountSummary,
    SummaryResponse,
    LiveEntry,
    LiveBatchResponse,
    PositionsEntry,
    PositionsBatchResponse,
    Bar,
    RatesResponse,
    Health,
)
