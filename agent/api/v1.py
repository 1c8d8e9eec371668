"""The native read API (`/api/v1/...`) and the small status summary the status page polls."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.api.auth import require_read
from agent.api.common import (
    OFFSET_MAX,
    RUNS_LIMIT_DEFAULT,
    RUNS_LIMIT_MAX,
    account_of,
    accounts_of,
    from_store,
    merge_fleet,
    now,
    parse_account,
    parse_int,
    query_one,
)
from agent.api.errors import ApiError
from agent.api.serialize import (
    account_json,
    accounts_json,
    iso,
    run_json,
    state_counts,
    thresholds_json,
)
from agent.freshness import STATES
from agent.store.base import StoreError

if TYPE_CHECKING:
    from agent.app import Agent

_STATE_NAMES = tuple(s.value for s in STATES)
OFFLOAD_ABOVE = 200  # accounts; below this, serialising inline is cheaper than a thread hop


def routes(agent: Agent) -> list[web.RouteDef]:
    settings = agent.settings

    async def list_accounts(request: web.Request) -> web.Response:
        caller = require_read(request, settings)
        wanted = query_one(request, "state")
        if wanted is not None and wanted not in _STATE_NAMES:
            raise ApiError(400, "invalid_parameter", f"state must be one of {', '.join(_STATE_NAMES)}")
        records = await accounts_of(agent, None if caller.sees_all else caller.client_id)
        t = now(agent)
        thresholds = settings.thresholds

        def body() -> str:
            accounts = accounts_json(records, t, thresholds)
            if wanted is not None:
                accounts = [a for a in accounts if a["freshness"]["state"] == wanted]
            doc = {
                "accounts": accounts,
                "count": len(accounts),
                "thresholds": thresholds_json(thresholds),
                "generated_at": iso(t),
            }
            return json.dumps(doc)

        # A large fleet takes tens of ms to serialise: off the loop, so single reads keep flowing.
        text = await asyncio.to_thread(body) if len(records) > OFFLOAD_ABOVE else body()
        return web.Response(text=text, content_type="application/json")

    async def get_account(request: web.Request) -> web.Response:
        caller = require_read(request, settings)
        account = parse_account(request)
        record = await account_of(agent, account)
        if record is None:
            raise ApiError(404, "account_not_found", f"account {account} is neither stored nor listed")
        caller.check_client(record.client_id)
        return web.json_response(account_json(record, now(agent), settings.thresholds))

    async def list_runs(request: web.Request) -> web.Response:
        caller = require_read(request, settings)
        if not caller.sees_all:
            raise ApiError(403, "forbidden", "the sync history is for token holders only")
        limit_text, offset_text = query_one(request, "limit"), query_one(request, "offset")
        limit = (
            RUNS_LIMIT_DEFAULT
            if limit_text is None
            else parse_int(limit_text, "limit", minimum=1, maximum=RUNS_LIMIT_MAX)
        )
        offset = 0 if offset_text is None else parse_int(offset_text, "offset", minimum=0, maximum=OFFSET_MAX)
        runs = await from_store(agent.store.list_runs(limit=limit, offset=offset))
        total = await from_store(agent.store.count_runs())
        return web.json_response(
            {"runs": [run_json(r) for r in runs], "total": total, "limit": limit, "offset": offset}
        )

    async def get_status(request: web.Request) -> web.Response:
        """What the status page shows besides the accounts; answers even when the store is down."""
        caller = require_read(request, settings)
        t = now(agent)
        state = agent.service.state
        counts: dict[str, Any] | None
        try:
            records = await agent.store.get_accounts(client_id=None if caller.sees_all else caller.client_id)
        except StoreError:
            store_up, counts = False, None
        else:
            store_up = True
            if caller.sees_all:
                records = merge_fleet(agent, records)
            accounts = accounts_json(records, t, settings.thresholds)
            counts = {"total": len(accounts), "by_state": state_counts(accounts)}
        health = state.last_health if state.bridge_up else None
        run = state.last_run
        return web.json_response(
            {
                "time": iso(t),
                "bridge": {
                    "up": state.bridge_up,
                    "status": health.status if health else None,
                    "response_time": round(health.response_time, 3) if health else None,
                },
                "store": {"up": store_up},
                "sync": {
                    "running": state.running is not None,
                    "last_success_at": iso(state.last_success_at),
                    "last": None
                    if run is None
                    else {
                        "time": iso(run.finished_at or run.started_at),
                        "result": run.result.value if run.result else None,
                        "accounts_synced": run.synced_live + run.synced_stored,
                        "total_accounts": run.accounts_total,
                        "duration": round(run.duration_seconds, 3)
                        if run.duration_seconds is not None
                        else None,
                    },
                },
                "accounts": counts,
                "thresholds": thresholds_json(settings.thresholds),
            }
        )

    return [
        web.get("/api/v1/accounts", list_accounts),
        web.get("/api/v1/accounts/{account}", get_account),
        web.get("/api/v1/sync/runs", list_runs),
        web.get("/api/v1/status", get_status),
    ]
