"""Admin operations (admin token only): run a sync cycle now, the health summary, and assigning accounts
to clients.

Assignment makes the seed's `/api/client/{client_id}/...` paths work outside the demo:
`PUT /api/admin/mt5/accounts/{account}/client` with `{"client_id": "..."}` assigns; `DELETE` of the same
path unassigns. The account must be stored or listed by the source (404 otherwise); a listed account
that never synced gets a document holding only its number and client, and the first sync adds its
values. The answer is the account as every endpoint shows it: the client id itself is a private field
and never leaves the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from agent.api import queries, schema
from agent.api.auth import require_admin
from agent.api.common import (
    ACCOUNT_PARAM,
    accounts,
    from_store,
    known_scope,
    now,
    parse_account,
    settings,
    store,
    sync_view,
    thresholds,
)
from agent.api.errors import ApiError
from agent.api.keys import FLEET, MANUAL_CYCLES, SYNC
from agent.api.serialize import account_json
from agent.api.spec import Operation, documented
from agent.domain.runs import SyncRun
from agent.store.checks import client_id_problem
from agent.sync.cycle import AlreadyRunning

log = logging.getLogger("mt5_agent.api")

routes = web.RouteTableDef()

BODY_MAX_BYTES = 4096  # {"client_id": <128 characters>} with room to spare
ADMIN_ERRORS = (401, 403, 503)
ASSIGNMENT_PATH = "/api/admin/mt5/accounts/{account}/client"


# -- sync trigger -------------------------------------------------------------------------------------


@routes.post("/api/admin/sync-from-vps")
@documented(
    Operation(
        "syncFromVps",
        "syncFromVps",
        "admin",
        "admin",
        schema.SyncResult,
        "The cycle ran (whatever its result)",
        errors=ADMIN_ERRORS,
        description="Runs one sync cycle now and answers when it is done.",
        responses={409: ("A cycle is already running; `run_id` names it", schema.SyncRunning)},
    )
)
async def post_sync(request: web.Request) -> web.Response:
    require_admin(request, settings(request))
    # Run as a task shielded from the request: a client hanging up does not abort a sync.
    cycles = request.app[MANUAL_CYCLES]
    task = asyncio.get_running_loop().create_task(request.app[SYNC].run_cycle(trigger="manual"))
    cycles.add(task)
    task.add_done_callback(_forget(cycles))
    try:
        run = await asyncio.shield(task)
    except AlreadyRunning as exc:
        raise ApiError(
            409,
            "sync_running",
            "a sync cycle is already running; wait for it to finish",
            extra={"run_id": exc.run.run_id},
        ) from None
    return web.json_response(queries.sync_result(run))


def _forget(tasks: set[asyncio.Task[SyncRun]]) -> Any:
    def done(task: asyncio.Task[SyncRun]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an orphaned task's error is not "never retrieved"

    return done


async def stop_manual_cycles(app: web.Application) -> None:
    """At shutdown (before the store closes), a manual cycle still running is cancelled and recorded
    as interrupted rather than left to fail against a closed store."""
    cycles = app[MANUAL_CYCLES]
    for task in list(cycles):
        task.cancel()
    await asyncio.gather(*cycles, return_exceptions=True)


# -- health -------------------------------------------------------------------------------------------


@routes.get("/api/admin/mt5-health")
@documented(
    Operation(
        "mt5Health",
        "mt5Health",
        "admin",
        "admin",
        schema.Health,
        "Health as the seed's section 6.3, from what the agent already knows",
        errors=ADMIN_ERRORS,
        description="Never calls the bridge: reports the last cycle's view and the stored data age.",
    )
)
async def get_health(request: web.Request) -> web.Response:
    require_admin(request, settings(request))
    found = await known_scope(request)
    sync, t = sync_view(request), now(request)
    fresh = None if found is None else found.freshness(t, thresholds(request))
    return web.json_response(queries.health_of(sync, fresh, t))


# -- client assignment --------------------------------------------------------------------------------


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


async def _assigned(request: web.Request, account: int, client_id: str | None) -> web.Response:
    documents = store(request)
    if not await from_store(queries.known_account(documents.accounts, accounts(request), account)):
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    await from_store(documents.accounts.set_client(account, client_id))
    request.app[FLEET].set_client(account, client_id)  # the read model follows the store
    log.info(
        "account %s %s",
        account,
        "assigned to a client" if client_id is not None else "unassigned from its client",
        extra={"account": account},
    )
    record = queries.account_record(accounts(request), account)
    if record is None:  # a document another process wrote since the fleet was loaded
        record = await from_store(documents.accounts.get_account(account))
    if record is None:  # deleted behind our back between the two reads
        raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
    return web.json_response(account_json(record, now(request), thresholds(request)))


@routes.put(ASSIGNMENT_PATH)
@documented(
    Operation(
        "assignClient",
        "assignClient",
        "admin",
        "admin",
        schema.Account,
        "The account as every endpoint shows it (never its client id)",
        errors=(400, *ADMIN_ERRORS, 404, 413),
        params=(ACCOUNT_PARAM,),
        description="Assigns the account to a client, so the client paths and a client JWT see it. The "
        "account must be stored or listed by the source; a listed account that never synced gets a "
        "document holding only its number and client.",
        body=schema.ClientAssignment,
    )
)
async def put_client(request: web.Request) -> web.Response:
    require_admin(request, settings(request))
    account = parse_account(request)
    client_id = await _client_id_from_body(request)
    return await _assigned(request, account, client_id)


@routes.delete(ASSIGNMENT_PATH)
@documented(
    Operation(
        "unassignClient",
        "unassignClient",
        "admin",
        "admin",
        schema.Account,
        "The account, as every endpoint shows it",
        errors=(400, *ADMIN_ERRORS, 404),
        params=(ACCOUNT_PARAM,),
        description="Removes the account's client: only token holders see it from then on.",
    )
)
async def delete_client(request: web.Request) -> web.Response:
    require_admin(request, settings(request))
    return await _assigned(request, parse_account(request), None)
