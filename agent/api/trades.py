"""Positions and trade events (DESIGN.md section 11): `GET /api/v1/accounts/{account}/positions` and
`GET /api/v1/events`.

Same access as accounts: a read or admin token sees every account, a client JWT only its own (an account
or its events outside them answer 403). Both answers are read from the store, which the positions poller
writes: the events of a round first, then the positions with `as_of_event_id`, so a client that re-reads
positions and resumes the event cursor from `as_of_event_id` misses nothing and sees nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from agent.api.auth import require_read
from agent.api.common import (
    ACCOUNT_MAX,
    ACCOUNT_PARAM,
    accounts,
    from_store,
    parse_account,
    parse_int,
    query_one,
    settings,
    store,
)
from agent.api.errors import ApiError
from agent.api.schema import Schema
from agent.api.serialize import iso
from agent.api.spec import Operation, Param, documented
from agent.domain.trades import EventType, Position, PositionType, TradeEvent
from agent.store.base import cursor_expired

routes = web.RouteTableDef()

EVENTS_LIMIT_DEFAULT = 100
EVENTS_LIMIT_MAX = 1000
EVENT_ID_MAX = 2**63 - 1
_TYPES = tuple(t.value for t in EventType)


class PositionBody(Schema):
    """One open position, MT5's fields (times UTC, broker time already converted by the bridge)."""

    ticket: int
    identifier: int = Field(description="the position identifier: a trade's identity (the ticket can change)")
    time: datetime
    time_update: datetime
    type: int = Field(description="0 buy, 1 sell", json_schema_extra={"enum": [int(t) for t in PositionType]})
    magic: int
    reason: int
    volume: float
    price_open: float
    sl: float = Field(description="0: none")
    tp: float = Field(description="0: none")
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str


class AccountPositions(Schema):
    account: int
    as_of: datetime | None = Field(description="when the terminal was read; null before the first poll")
    as_of_event_id: int | None = Field(
        description="the newest event id stored when these positions were: resume `/api/v1/events` from it"
    )
    positions: list[PositionBody]


class EventBody(Schema):
    id: int = Field(description="store-assigned, increasing")
    account: int
    identifier: int = Field(description="the position identifier of the trade")
    type: EventType
    dedup_key: str = Field(description="unique; derived from the terminal's own identities")
    time: datetime = Field(description="the terminal's time of the change (UTC)")
    detected_at: datetime = Field(description="when the agent detected it")
    symbol: str
    data: dict[str, Any] = Field(
        description="per type: DESIGN.md section 11's table. TRADE_OPENED and TRADE_CLOSED also carry "
        "`score`: {score (1-10, null when no rule could be judged), rules: [{rule, points, max_points, "
        "passed, reason}], complete}, the live score at the open and the final one at the close; "
        "TRADE_CLOSED `r_multiple` beside it (null with `r_multiple_reason`, e.g. no_initial_stop_loss). "
        "Events stored before scores were kept carry none."
    )


class EventPage(Schema):
    events: list[EventBody]
    next_after: int = Field(description="pass as `after` to read on")
    has_more: bool
    oldest_available: int | None = Field(description="the oldest retained event id; null when none is")


def position_json(p: Position) -> dict[str, Any]:
    return {
        "ticket": p.ticket,
        "identifier": p.identifier,
        "time": iso(p.time),
        "time_update": iso(p.time_update),
        "type": int(p.type),
        "magic": p.magic,
        "reason": int(p.reason),
        "volume": p.volume,
        "price_open": p.price_open,
        "sl": p.sl,
        "tp": p.tp,
        "price_current": p.price_current,
        "swap": p.swap,
        "profit": p.profit,
        "symbol": p.symbol,
        "comment": p.comment,
    }


def event_json(e: TradeEvent) -> dict[str, Any]:
    return {
        "id": e.id,
        "account": e.account,
        "identifier": e.identifier,
        "type": e.type.value,
        "dedup_key": e.dedup_key,
        "time": iso(e.time),
        "detected_at": iso(e.detected_at),
        "symbol": e.symbol,
        "data": dict(e.data),
    }


READ_ERRORS = (401, 403, 503)


@routes.get("/api/v1/accounts/{account}/positions")
@documented(
    Operation(
        "getAccountPositions",
        "An account's open positions",
        "positions",
        "read",
        AccountPositions,
        "the open positions as last polled, with `as_of` and `as_of_event_id`",
        errors=(400, *READ_ERRORS, 404),
        params=(ACCOUNT_PARAM,),
    )
)
async def get_positions(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    account = parse_account(request)
    state = accounts(request).get(account)
    if state is None:
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    caller.check_client(state.client_id)
    snapshot = await from_store(store(request).positions.get_positions(account))
    body = {
        "account": account,
        "as_of": iso(snapshot.as_of) if snapshot is not None else None,
        "as_of_event_id": snapshot.as_of_event_id if snapshot is not None else None,
        "positions": [position_json(p) for p in snapshot.positions] if snapshot is not None else [],
    }
    return web.json_response(body)


AFTER_PARAM = Param(
    "after",
    "query",
    {"type": "integer", "minimum": 0, "maximum": EVENT_ID_MAX},
    description="events with an id greater than this (default 0); older than the retained history: 410",
)
LIMIT_PARAM = Param(
    "limit",
    "query",
    {"type": "integer", "minimum": 1, "maximum": EVENTS_LIMIT_MAX},
    description=f"at most this many events (default {EVENTS_LIMIT_DEFAULT})",
)
EVENT_ACCOUNT_PARAM = Param(
    "account", "query", {"type": "integer", "minimum": 1, "maximum": ACCOUNT_MAX}, description="one account"
)
TYPE_PARAM = Param("type", "query", {"type": "string", "enum": list(_TYPES)}, description="one event type")


@routes.get("/api/v1/events")
@documented(
    Operation(
        "listEvents",
        "Trade events after a cursor",
        "events",
        "read",
        EventPage,
        "events in id order",
        errors=(400, *READ_ERRORS, 404, 410),
        params=(AFTER_PARAM, LIMIT_PARAM, EVENT_ACCOUNT_PARAM, TYPE_PARAM),
        description="Read on with `after=next_after` while `has_more`. A cursor older than the retained "
        "history answers 410 `cursor_expired`: re-read the positions and resume from their "
        "`as_of_event_id`.",
    )
)
async def list_events(request: web.Request) -> web.Response:
    caller = require_read(request, settings(request))
    after_text, limit_text = query_one(request, "after"), query_one(request, "limit")
    after = parse_int(after_text, "after", minimum=0, maximum=EVENT_ID_MAX) if after_text is not None else 0
    limit = (
        parse_int(limit_text, "limit", minimum=1, maximum=EVENTS_LIMIT_MAX)
        if limit_text is not None
        else EVENTS_LIMIT_DEFAULT
    )
    type_text = query_one(request, "type")
    if type_text is not None and type_text not in _TYPES:
        raise ApiError(400, "invalid_parameter", f"type must be one of {', '.join(_TYPES)}")
    types = {EventType(type_text)} if type_text is not None else None
    fleet = accounts(request)
    wanted: set[int] | None = None
    account_text = query_one(request, "account")
    if account_text is not None:
        account = parse_int(account_text, "account", minimum=1, maximum=ACCOUNT_MAX)
        state = fleet.get(account)
        if state is None:
            raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
        caller.check_client(state.client_id)
        wanted = {account}
    elif not caller.sees_all:
        wanted = {a for a, state in fleet.items() if state.client_id == caller.client_id}
    events_store = store(request).events
    page = await from_store(
        events_store.list_events(after=after, limit=limit + 1, accounts=wanted, types=types)
    )
    # latest before oldest: an event stored between the two reads cannot make an empty store look pruned
    latest = await from_store(events_store.latest_id())
    oldest = await from_store(events_store.oldest_available())
    if cursor_expired(after, oldest, latest):
        raise ApiError(
            410,
            "cursor_expired",
            f"events after {after} are no longer retained (oldest available: {oldest}); re-read the "
            "positions and resume from their as_of_event_id",
            # where to resume when no positions are at hand (oldest null: every event was pruned)
            extra={"oldest_available": oldest, "latest_id": latest},
        )
    has_more = len(page) > limit
    page = page[:limit]
    next_after = page[-1].id if page and page[-1].id is not None else after
    body = {
        "events": [event_json(e) for e in page],
        "next_after": next_after,
        "has_more": has_more,
        "oldest_available": oldest,
    }
    return web.json_response(body)
