"""What the API answers, as plain functions: views, freshness, portfolio, health and status summaries.

No aiohttp here: every function takes what it reads (records, the fleet's listing, the sync's state, the
time and thresholds) and returns the JSON-ready body, so each can be tested without HTTP. The handlers
only authenticate, parse, call these and write the answer. Store reads raise `StoreError`; the handler
layer turns that into its 503.

The accounts the API shows are the store's documents plus every account of the fleet (what the source
lists, loaded from the store at start) that has no document yet: a listed account that never synced is
shown as `critical` with null values, exactly as /metrics and the alert rules see it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from agent.api.serialize import (
    accounts_json,
    humanize_age,
    iso,
    portfolio_totals,
    run_json,
    state_counts,
    thresholds_json,
    worst_state,
)
from agent.domain.accounts import AccountRecord
from agent.domain.freshness import State, Thresholds
from agent.domain.runs import RunResult, SyncRun
from agent.store.base import Store


class Listed(Protocol):
    """What the fleet's listing says of an account the source lists."""

    @property
    def name(self) -> str | None: ...
    @property
    def server(self) -> str | None: ...


Fleet = Mapping[int, Listed]


class BridgeHealthView(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def response_time(self) -> float: ...


class SyncView(Protocol):
    """What the summaries read of the sync's state."""

    @property
    def bridge_up(self) -> bool | None: ...
    @property
    def last_health(self) -> BridgeHealthView | None: ...
    @property
    def last_run(self) -> SyncRun | None: ...
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def running(self) -> SyncRun | None: ...


# -- accounts: the store's documents merged with the fleet ------------------------------------------


def with_fleet_names(record: AccountRecord, fleet: Fleet) -> AccountRecord:
    """Name and server come from the source's listing when the document has none (a sync writes them
    only when it creates the document, so one created by an assignment never gets them)."""
    if record.name is not None and record.server is not None:
        return record
    view = fleet.get(record.account)
    if view is None or (view.name is None and view.server is None):
        return record
    return dataclasses.replace(record, name=record.name or view.name, server=record.server or view.server)


def fleet_record(fleet: Fleet, account: int) -> AccountRecord | None:
    """A fleet account with no document: listed, never synced. Only what the listing said (name,
    server); every value, its source and its times are null (critical, as in /metrics)."""
    view = fleet.get(account)
    if view is None:
        return None
    return AccountRecord(account=account, name=view.name, server=view.server)


def merge_fleet(records: list[AccountRecord], fleet: Fleet) -> list[AccountRecord]:
    """The store's records plus the fleet's accounts that have none, ordered by account."""
    if not fleet:
        return records
    stored = {r.account for r in records}
    missing = [a for a in fleet if a not in stored]
    merged = [with_fleet_names(r, fleet) for r in records]
    if not missing:
        return merged
    merged.extend(r for a in missing if (r := fleet_record(fleet, a)) is not None)
    merged.sort(key=lambda r: r.account)
    return merged


async def read_accounts(store: Store, fleet: Fleet, client_id: str | None = None) -> list[AccountRecord]:
    """A client's stored accounts, or (client_id None) every account the API shows: the store's and
    the fleet's. Fleet accounts without a document have no client, so they never appear for one."""
    records = await store.get_accounts(client_id=client_id)
    if client_id is not None:
        return [with_fleet_names(r, fleet) for r in records]
    return merge_fleet(records, fleet)


async def read_account(store: Store, fleet: Fleet, account: int) -> AccountRecord | None:
    """One account as the API shows it: its document, else the fleet's never-synced entry, else None."""
    record = await store.get_account(account)
    if record is None:
        return fleet_record(fleet, account)
    return with_fleet_names(record, fleet)


# -- bodies -----------------------------------------------------------------------------------------


def account_list(
    records: Sequence[AccountRecord], now: datetime, thresholds: Thresholds, state: str | None = None
) -> dict[str, Any]:
    """`/api/v1/accounts`: the accounts (only those in `state` when given) with the thresholds used."""
    accounts = accounts_json(records, now, thresholds)
    if state is not None:
        accounts = [a for a in accounts if a["freshness"]["state"] == state]
    return {
        "accounts": accounts,
        "count": len(accounts),
        "thresholds": thresholds_json(thresholds),
        "generated_at": iso(now),
    }


def accounts_page(records: Sequence[AccountRecord], now: datetime, thresholds: Thresholds) -> dict[str, Any]:
    """The seed's account lists (a client's, the admin's)."""
    accounts = accounts_json(records, now, thresholds)
    return {"accounts": accounts, "count": len(accounts), "generated_at": iso(now)}


def portfolio(records: Sequence[AccountRecord], now: datetime, thresholds: Thresholds) -> dict[str, Any]:
    """A client's accounts with per-currency sums of the stored values (nothing recalculated)."""
    accounts = accounts_json(records, now, thresholds)
    totals, not_summed = portfolio_totals(accounts)
    return {
        "accounts": accounts,
        "count": len(accounts),
        "totals": totals,
        "accounts_summed": len(accounts) - len(not_summed),
        "accounts_not_summed": len(not_summed),
        "not_summed": not_summed,
        "generated_at": iso(now),
    }


def runs_page(runs: Sequence[SyncRun], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"runs": [run_json(r) for r in runs], "total": total, "limit": limit, "offset": offset}


def sync_result(run: SyncRun) -> dict[str, Any]:
    """The answer to a manual cycle: the seed's fields, then the run itself."""
    result = run.result or RunResult.FAILED
    return {
        "status": result.value,
        "accounts_synced": run.synced_live + run.synced_stored,
        "total_accounts": run.accounts_total,
        "run_id": run.run_id,
        "result": run_json(run),
        "duration": run.duration_seconds,
    }


def readiness(*, store_up: bool, cycle_ran: bool) -> tuple[bool, dict[str, Any]]:
    """Ready = the store answers now and at least one cycle has run. No error text: /readyz is
    unauthenticated and store errors can name hosts or paths."""
    problems: list[str] = []
    if not store_up:
        problems.append("store unreachable")
    if not cycle_ran:
        problems.append("no sync cycle has run yet")
    return not problems, {"ready": not problems, "problems": problems}


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


def status_summary(
    sync: SyncView, records: Sequence[AccountRecord] | None, now: datetime, thresholds: Thresholds
) -> dict[str, Any]:
    """What the status page shows besides the accounts. `records` None: the store is down."""
    counts: dict[str, Any] | None = None
    if records is not None:
        accounts = accounts_json(records, now, thresholds)
        counts = {"total": len(accounts), "by_state": state_counts(accounts)}
    health = sync.last_health if sync.bridge_up else None
    run = sync.last_run
    return {
        "time": iso(now),
        "bridge": {
            "up": sync.bridge_up,
            "status": health.status if health else None,
            "response_time": round(health.response_time, 3) if health else None,
        },
        "store": {"up": records is not None},
        "sync": {
            "running": sync.running is not None,
            "last_success_at": iso(sync.last_success_at),
            "last": None
            if run is None
            else {
                "time": iso(run.finished_at or run.started_at),
                "result": run.result.value if run.result else None,
                "accounts_synced": run.synced_live + run.synced_stored,
                "total_accounts": run.accounts_total,
                "duration": _round(run.duration_seconds, 3),
            },
        },
        "accounts": counts,
        "thresholds": thresholds_json(thresholds),
    }


def health_summary(
    sync: SyncView, records: Sequence[AccountRecord] | None, now: datetime, thresholds: Thresholds
) -> dict[str, Any]:
    """The seed's section 6.3 shape, from what the agent already knows: the bridge is not called.
    `records` None: the store is down."""
    issues: list[str] = []
    unhealthy = False

    if sync.bridge_up is None:
        reachable, bridge_status, response_time = None, None, None
        issues.append("VPS bridge not contacted yet: no sync cycle has run")
    elif sync.bridge_up:
        health = sync.last_health
        reachable = True
        bridge_status = health.status if health else None
        response_time = round(health.response_time, 3) if health else None
    else:
        reachable, bridge_status, response_time = False, "unavailable", None
        unhealthy = True
        issues.append("VPS bridge unreachable or unhealthy at the last sync")

    freshness: dict[str, Any] = {"oldest_update": None, "staleness": None, "age_seconds": None}
    if records is None:
        unhealthy = True
        issues.append("store unreachable")
    else:
        accounts = accounts_json(records, now, thresholds)
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

    run = sync.last_run
    last_sync: dict[str, Any] = {"time": None, "success": None, "accounts_synced": None, "duration": None}
    if run is None:
        issues.append("no sync cycle has run yet")
    else:
        last_sync = {
            "time": iso(run.finished_at or run.started_at),
            "success": run.result is RunResult.SUCCESS,
            "accounts_synced": f"{run.synced_live + run.synced_stored}/{run.accounts_total}",
            "duration": _round(run.duration_seconds, 3),
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
        "checked_at": iso(now),
    }
