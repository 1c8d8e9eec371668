"""The seed backend's paths (seed sections 1.5, 6.3, 10), so the existing frontend keeps working.

A client is known to the agent only through its accounts: a client id with no stored accounts is
404 for every caller (a JWT for another client gets 403 first, so it learns nothing about it).
Responses never carry the client id: it is one of the private fields (DESIGN.md section 5).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.api.auth import require_admin, require_read
from agent.api.common import accounts_of, merge_fleet, now, parse_client_id
from agent.api.errors import ApiError
from agent.api.serialize import (
    accounts_json,
    humanize_age,
    iso,
    portfolio_totals,
    run_json,
    worst_state,
)
from agent.freshness import State
from agent.models import RunResult, SyncRun
from agent.store.base import StoreError
from agent.sync import AlreadyRunning

if TYPE_CHECKING:
    from agent.app import Agent


def setup(app: web.Application, agent: Agent) -> None:
    settings = agent.settings
    # Manual cycles run as tasks shielded from the request: a client hanging up does not abort a sync.
    cycles: set[asyncio.Task[SyncRun]] = set()

    async def stop_cycles(app: web.Application) -> None:
        """At shutdown (before the store closes), a manual cycle still running is cancelled and
        recorded as interrupted rather than left to fail against a closed store."""
        for task in list(cycles):
            task.cancel()
        await asyncio.gather(*cycles, return_exceptions=True)

    app.on_shutdown.append(stop_cycles)

    async def client_accounts(request: web.Request) -> dict[str, Any]:
        caller = require_read(request, settings)
        client_id = parse_client_id(request)
        caller.check_client(client_id)
        records = await accounts_of(agent, client_id)
        if not records:
            raise ApiError(404, "client_not_found", "no accounts are stored for this client")
        accounts = accounts_json(records, now(agent), settings.thresholds)
        return {"accounts": accounts, "count": len(accounts)}

    async def get_client_accounts(request: web.Request) -> web.Response:
        body = await client_accounts(request)
        return web.json_response({**body, "generated_at": iso(now(agent))})

    async def get_client_portfolio(request: web.Request) -> web.Response:
        body = await client_accounts(request)
        totals, not_summed = portfolio_totals(body["accounts"])
        return web.json_response(
            {
                "accounts": body["accounts"],
                "count": body["count"],
                "totals": totals,
                "accounts_summed": body["count"] - len(not_summed),
                "accounts_not_summed": len(not_summed),
                "not_summed": not_summed,
                "generated_at": iso(now(agent)),
            }
        )

    async def get_admin_accounts(request: web.Request) -> web.Response:
        require_admin(request, settings)
        t = now(agent)
        accounts = accounts_json(await accounts_of(agent), t, settings.thresholds)
        return web.json_response({"accounts": accounts, "count": len(accounts), "generated_at": iso(t)})

    async def post_sync(request: web.Request) -> web.Response:
        require_admin(request, settings)
        task = asyncio.get_running_loop().create_task(agent.service.run_cycle(trigger="manual"))
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
        result = run.result or RunResult.FAILED
        return web.json_response(
            {
                "status": result.value,
                "accounts_synced": run.synced_live + run.synced_stored,
                "total_accounts": run.accounts_total,
                "run_id": run.run_id,
                "result": run_json(run),
                "duration": run.duration_seconds,
            }
        )

    async def get_health(request: web.Request) -> web.Response:
        require_admin(request, settings)
        return web.json_response(await _health(agent))

    app.add_routes(
        [
            web.get("/api/client/{client_id}/mt5-accounts", get_client_accounts),
            web.get("/api/client/{client_id}/portfolio", get_client_portfolio),
            web.get("/api/admin/mt5/accounts", get_admin_accounts),
            web.post("/api/admin/sync-from-vps", post_sync),
            web.get("/api/admin/mt5-health", get_health),
        ]
    )


def _forget(tasks: set[asyncio.Task[SyncRun]]) -> Any:
    def done(task: asyncio.Task[SyncRun]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an orphaned task's error is not "never retrieved"

    return done


async def _health(agent: Agent) -> dict[str, Any]:
    """The seed's section 6.3 shape, from what the agent already knows: the bridge is not called."""
    state = agent.service.state
    t = now(agent)
    issues: list[str] = []
    unhealthy = False

    if state.bridge_up is None:
        reachable, bridge_status, response_time = None, None, None
        issues.append("VPS bridge not contacted yet: no sync cycle has run")
    elif state.bridge_up:
        health = state.last_health
        reachable = True
        bridge_status = health.status if health else None
        response_time = round(health.response_time, 3) if health else None
    else:
        reachable, bridge_status, response_time = False, "unavailable", None
        unhealthy = True
        issues.append("VPS bridge unreachable or unhealthy at the last sync")

    freshness: dict[str, Any] = {"oldest_update": None, "staleness": None, "age_seconds": None}
    try:
        records = merge_fleet(agent, await agent.store.get_accounts())
        accounts = accounts_json(records, t, agent.settings.thresholds)
    except StoreError:
        accounts = None
        unhealthy = True
        issues.append("store unreachable")
    if accounts is not None:
        worst = worst_state(accounts)
        if worst is None:
            issues.append("no accounts stored or listed")
        else:
            ages = [a["freshness"]["age_seconds"] for a in accounts]
            oldest = None if None in ages else max(ages)
            freshness = {
                "oldest_update": humanize_age(oldest),
                "staleness": worst.value,
                "age_seconds": oldest,
            }
            by_state = {s: sum(a["freshness"]["state"] == s for a in accounts) for s in State}
            if worst is State.CRITICAL:
                unhealthy = True
                issues.append(f"{by_state[State.CRITICAL]} account(s) with critical data age or never synced")
            if by_state[State.DEGRADED]:
                issues.append(f"{by_state[State.DEGRADED]} account(s) with degraded data age")

    run = state.last_run
    last_sync: dict[str, Any] = {"time": None, "success": None, "accounts_synced": None, "duration": None}
    if run is None:
        issues.append("no sync cycle has run yet")
    else:
        last_sync = {
            "time": iso(run.finished_at or run.started_at),
            "success": run.result is RunResult.SUCCESS,
            "accounts_synced": f"{run.synced_live + run.synced_stored}/{run.accounts_total}",
            "duration": round(run.duration_seconds, 3) if run.duration_seconds is not None else None,
        }
        if run.result is not RunResult.SUCCESS:
            issues.append(
                f"last sync {run.result.value if run.result else 'unfinished'}: {run.summary_line()}"
            )
        if run.result in (RunResult.FAILED, RunResult.SKIPPED):
            unhealthy = True
    last_sync.update(
        run_id=run.run_id if run else None, result=run.result.value if run and run.result else None
    )

    status = "unhealthy" if unhealthy else ("degraded" if issues else "healthy")
    return {
        "status": status,
        "vps_api": {"reachable": reachable, "response_time": response_time, "status": bridge_status},
        "data_freshness": freshness,
        "last_sync": last_sync,
        "issues": issues,
        "checked_at": iso(t),
    }
