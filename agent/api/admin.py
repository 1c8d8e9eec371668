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
from collections.abc import Iterable
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
from agent.domain.runs import RunResult, SyncRun
from agent.store.checks import client_id_problem
from agent.sync.cycle import AlreadyRunning, SyncService
from agent.sync.shards import CONFLICT_KINDS, ShardMonitor

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
        "Run a sync cycle now",
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
    """Several sources (`SYNC_SERVICES`): one cycle per source, concurrently; the seed's fields are summed
    over them (status: the worst), `result` is the first source's run; each source's run is recorded
    (GET /api/v1/sync/runs). 409 only when every source's cycle is already running."""
    require_admin(request, settings(request))
    services = request.app.get(SYNC_SERVICES) or [request.app[SYNC]]
    # Run as tasks shielded from the request: a client hanging up does not abort a sync.
    cycles = request.app[MANUAL_CYCLES]
    tasks = []
    for service in services:
        task = asyncio.get_running_loop().create_task(service.run_cycle(trigger="manual"))
        cycles.add(task)
        task.add_done_callback(_forget(cycles))
        tasks.append(task)
    outcomes = await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
    runs = [o for o in outcomes if isinstance(o, SyncRun)]
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, AlreadyRunning):
            raise outcome
    if not runs:
        busy = next(o for o in outcomes if isinstance(o, AlreadyRunning))
        raise ApiError(
            409,
            "sync_running",
            "a sync cycle is already running; wait for it to finish",
            extra={"run_id": busy.run.run_id},
        )
    body = queries.sync_result(runs[0])
    if len(runs) > 1:
        worst = max((r.result or RunResult.FAILED for r in runs), key=_SEVERITY.index)
        body["status"] = worst.value
        body["accounts_synced"] = sum(r.synced_live + r.synced_stored for r in runs)
        body["total_accounts"] = sum(r.accounts_total for r in runs)
        body["duration"] = max((r.duration_seconds or 0.0) for r in runs)
    return web.json_response(body)


# Every source's sync service (set by the composition root when the agent watches several sources).
SYNC_SERVICES = web.AppKey("mt5_sync_services", list[SyncService])
# This agent's shard monitor (set by the composition root when MT5_AGENT_SHARD is set).
SHARD_MONITOR = web.AppKey("mt5_shard_monitor", ShardMonitor)
_SEVERITY = (RunResult.SUCCESS, RunResult.PARTIAL, RunResult.SKIPPED, RunResult.FAILED)


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
        "Fleet health in the seed's shape",
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
    body = queries.health_of(sync, fresh, t)
    services = request.app.get(SYNC_SERVICES)
    if services:
        body["sources"] = [_source_health(service) for service in services]
    monitor = request.app.get(SHARD_MONITOR)
    if monitor is not None:
        body["shard"] = _shard_health(monitor, accounts(request).keys())
        problem = monitor.problem()
        if problem is not None:
            body["issues"].append(problem)
            if body["status"] == "healthy":
                body["status"] = "degraded"
    return web.json_response(body)


def _shard_health(monitor: ShardMonitor, known: Iterable[int]) -> dict[str, Any]:
    """`schema.HealthShard`: the lease fields by name, never the store document."""
    shard = monitor.shard
    return {
        "index": shard.index,
        "count": shard.count,
        "instance": monitor.instance,
        "lease_up": monitor.lease_up,
        "live_shards": len(monitor.peers),
        "owned_accounts": sum(1 for a in known if shard.owns(a)),
        "conflicts": [
            {"kind": kind, "instance": x.instance, "index": x.index, "count": x.count}
            for kind in CONFLICT_KINDS
            for x in monitor.conflicts.get(kind, ())
        ],
    }


_CONNECTION_FIELDS = (  # allow-listed: never the MetaAPI account id or anything secret
    "account",
    "connected",
    "connected_to_broker",
    "synchronized",
    "last_packet_age_seconds",
    "connections_created",
    "recreated",
    "consecutive_failures",
    "last_problem",
    "retry_in_seconds",
)


def _source_health(service: SyncService) -> dict[str, Any]:
    """One source in /api/admin/mt5-health (`schema.HealthSource`), from what the agent already knows."""
    source, status = service.source, service.status
    name = source.name
    owns = service.fleet.owns  # a shard holds only its own accounts; the others are mirrored from the store
    held = sum(1 for a, st in service.fleet.snapshot().accounts.items() if st.source == name and owns(a))
    out: dict[str, Any] = {
        "name": name,
        "kind": source.kind,
        "up": status.bridge_up,
        "accounts": held,
        "last_result": status.last_run.result.value if status.last_run and status.last_run.result else None,
    }
    states = getattr(source, "connection_states", None)
    if callable(states):
        out["connections"] = [{f: getattr(st, f) for f in _CONNECTION_FIELDS} for st in states()]
    return out


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
        "Assign an account to a client",
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
        "Remove an account's client",
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
