"""Helpers shared by the handlers: strict parameter parsing, store reads that fail as 503 JSON, and the
merge of the store's documents with the fleet the sync knows.

The accounts the API shows are the store's documents plus every account of the fleet
(`SyncService.state.accounts`: what the source lists, loaded from the store at start) that has no
document yet: a listed account that never synced is shown as `critical` with null values, exactly as
/metrics and the alert rules see it, instead of being absent from the API only.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from aiohttp import web

from agent.api.errors import ApiError
from agent.models import AccountRecord
from agent.store.base import StoreError

if TYPE_CHECKING:
    from agent.app import Agent

log = logging.getLogger("mt5_agent.api")

T = TypeVar("T")

ACCOUNT_MAX = 2**63 - 1  # both stores keep 64-bit integers; a bigger id cannot exist
CLIENT_ID_MAX_LENGTH = 200  # of a client id in a path: longer than any assignable one (128), never stored
OFFSET_MAX = 1_000_000_000
RUNS_LIMIT_MAX = 500
RUNS_LIMIT_DEFAULT = 50
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() would also take "1_0", " 7" and other scripts' digits


def now(agent: Agent) -> datetime:
    """Request time, on the sync service's clock so tests with a fixed clock agree."""
    return agent.service.clock()


async def from_store(call: Awaitable[T]) -> T:
    """Await a store read; a store that is down is a 503 JSON answer, its details only in the log."""
    try:
        return await call
    except StoreError as exc:
        log.warning("store read failed: %s", exc)
        raise ApiError(
            503, "store_unavailable", "the account store is unavailable; try again later"
        ) from None


def _with_fleet_names(record: AccountRecord, agent: Agent) -> AccountRecord:
    """Name and server come from the source's listing when the document has none (a sync writes them
    only when it creates the document, so one created by an assignment never gets them)."""
    if record.name is not None and record.server is not None:
        return record
    view = agent.service.state.accounts.get(record.account)
    if view is None or (view.name is None and view.server is None):
        return record
    return dataclasses.replace(record, name=record.name or view.name, server=record.server or view.server)


def fleet_record(agent: Agent, account: int) -> AccountRecord | None:
    """A fleet account with no document: listed, never synced. Only what the listing said (name,
    server); every value, its source and its times are null (critical, as in /metrics)."""
    view = agent.service.state.accounts.get(account)
    if view is None:
        return None
    return AccountRecord(account=account, name=view.name, server=view.server)


def merge_fleet(agent: Agent, records: list[AccountRecord]) -> list[AccountRecord]:
    """The store's records plus the fleet's accounts that have none, ordered by account."""
    fleet = agent.service.state.accounts
    if not fleet:
        return records
    stored = {r.account for r in records}
    missing = [a for a in fleet if a not in stored]
    merged = [_with_fleet_names(r, agent) for r in records]
    if not missing:
        return merged
    merged.extend(r for a in missing if (r := fleet_record(agent, a)) is not None)
    merged.sort(key=lambda r: r.account)
    return merged


async def accounts_of(agent: Agent, client_id: str | None = None) -> list[AccountRecord]:
    """A client's stored accounts, or (client_id None) every account the API shows: the store's and
    the fleet's. Fleet accounts without a document have no client, so they never appear for one."""
    records = await from_store(agent.store.get_accounts(client_id=client_id))
    if client_id is not None:
        return [_with_fleet_names(r, agent) for r in records]
    return merge_fleet(agent, records)


async def account_of(agent: Agent, account: int) -> AccountRecord | None:
    """One account as the API shows it: its document, else the fleet's never-synced entry, else None."""
    record = await from_store(agent.store.get_account(account))
    if record is None:
        return fleet_record(agent, account)
    return _with_fleet_names(record, agent)


def parse_int(text: str, name: str, *, minimum: int, maximum: int) -> int:
    if not _DIGITS.fullmatch(text) or not minimum <= (value := int(text)) <= maximum:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {minimum} to {maximum}")
    return value


def parse_account(request: web.Request) -> int:
    return parse_int(request.match_info["account"], "account", minimum=1, maximum=ACCOUNT_MAX)


def parse_client_id(request: web.Request) -> str:
    client_id = request.match_info["client_id"]
    if not 1 <= len(client_id) <= CLIENT_ID_MAX_LENGTH:
        raise ApiError(400, "invalid_parameter", f"client_id must be 1 to {CLIENT_ID_MAX_LENGTH} characters")
    return client_id


def query_one(request: web.Request, name: str) -> str | None:
    """A query parameter given at most once (a repeated one is ambiguous: 400)."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "invalid_parameter", f"{name} may be given only once")
    return values[0] if values else None
