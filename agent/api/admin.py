"""Assigning accounts to clients, so the seed's `/api/client/{client_id}/...` paths work outside the demo.

`PUT /api/admin/mt5/accounts/{account}/client` with `{"client_id": "..."}` assigns; `DELETE` of the same
path unassigns. Admin token only. The account must be stored or listed by the source (404 otherwise);
a listed account that never synced gets a document holding only its number and client, and the first
sync adds its values. The answer is the account as every endpoint shows it: the client id itself is a
private field and never leaves the store.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.api.auth import require_admin
from agent.api.common import account_of, from_store, now, parse_account
from agent.api.errors import ApiError
from agent.api.serialize import account_json
from agent.store._common import client_id_problem

if TYPE_CHECKING:
    from agent.app import Agent

log = logging.getLogger("mt5_agent.api")

BODY_MAX_BYTES = 4096  # {"client_id": <128 characters>} with room to spare


async def _client_id_from_body(request: web.Request) -> str:
    """The body must be exactly `{"client_id": "<assignable id>"}`; anything else is a 400 saying why."""
    if request.content_length is not None and request.content_length > BODY_MAX_BYTES:
        raise ApiError(413, "payload_too_large", f"the body may be at most {BODY_MAX_BYTES} bytes")
    raw = await request.read()  # bounded by the app's client_max_size when no length was sent
    if len(raw) > BODY_MAX_BYTES:
        raise ApiError(413, "payload_too_large", f"the body may be at most {BODY_MAX_BYTES} bytes")
    try:
        body: Any = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[...": deep nesting is a bad body too
        raise ApiError(400, "invalid_body", 'the body must be JSON: {"client_id": "..."}') from None
    if not isinstance(body, dict) or set(body) != {"client_id"}:
        raise ApiError(400, "invalid_body", 'the body must be exactly {"client_id": "..."}')
    client_id = body["client_id"]
    if (problem := client_id_problem(client_id)) is not None:
        raise ApiError(400, "invalid_parameter", problem)
    return client_id


def routes(agent: Agent) -> list[web.RouteDef]:
    settings = agent.settings

    async def assigned(account: int, client_id: str | None) -> web.Response:
        if await account_of(agent, account) is None:
            raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
        await from_store(agent.store.set_client(account, client_id))
        log.info(
            "account %s %s",
            account,
            "assigned to a client" if client_id is not None else "unassigned from its client",
            extra={"account": account},
        )
        record = await account_of(agent, account)
        if record is None:  # deleted behind our back between the two reads
            raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
        return web.json_response(account_json(record, now(agent), settings.thresholds))

    async def put_client(request: web.Request) -> web.Response:
        require_admin(request, settings)
        account = parse_account(request)
        client_id = await _client_id_from_body(request)
        return await assigned(account, client_id)

    async def delete_client(request: web.Request) -> web.Response:
        require_admin(request, settings)
        return await assigned(parse_account(request), None)

    path = "/api/admin/mt5/accounts/{account}/client"
    return [web.put(path, put_client), web.delete(path, delete_client)]
