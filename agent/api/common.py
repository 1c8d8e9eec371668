"""Helpers shared by the handlers: strict parameter parsing and store reads that fail as 503 JSON."""

from __future__ import annotations

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
CLIENT_ID_MAX_LENGTH = 200
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


async def accounts_of(agent: Agent, client_id: str | None = None) -> list[AccountRecord]:
    return await from_store(agent.store.get_accounts(client_id=client_id))


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
