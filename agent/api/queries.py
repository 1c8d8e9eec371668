"""What the API answers, as plain functions: views, freshness, portfolio, health and status summaries.

No aiohttp here: every function takes what it reads (the fleet's accounts, the sync's status, the time
and thresholds) and returns the JSON-ready body, so each can be tested without HTTP. The handlers only
authenticate, parse, call these and write the answer.

Accounts come from the one read model, the fleet (`agent.sync.fleet`): every account the store held at
start or the source lists, kept current by each cycle. A listed account that never synced is shown as
`critical` with null values, exactly as /metrics and the alert rules see it. The store is not read per
request (the sync history is: runs stay in the store).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from agent.domain.accounts import AccountRecord, AccountValues
from agent.domain.freshness import State, Thresholds
from agent.domain.runs import RunResult, SyncRun


class AccountState(Protocol):
    """What the read model holds of an account (agent.sync.fleet.AccountState)."""

    @property
    def account(self) -> int: ...
    @property
    def name(self) -> str | None: ...
    @property
    def server(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def values(self) -> AccountValues | None: ...
    @property
    def data_source(self) -> str | None: ...
    @property
    def live_data_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime | None: ...


Accounts = Mapping[int, AccountState]  # the fleet snapshot's accounts, ordered by account


class AccountLookup(Protocol):
    """The one store read the API still makes for accounts (agent.store.base.AccountStore)."""

    async def get_account(self, account: int) -> AccountRecord | None: ...


class BridgeHealthView(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def response_time(self) -> float: ...


class SyncView(Protocol):
    """What the summaries read of the sync's status (agent.sync.fleet.SyncStatus)."""

    @property
    def bridge_up(self) -> bool | None: ...
    @property
    def store_up(self) -> bool | None: ...
    @property
    def last_health(self) -> BridgeHealthView | None: ...
    @property
    def last_run(self) -> SyncRun | None: ...
    @property
    def last_success_at(self) -> datetime | None: ...
    @property
    def running(self) -> SyncRun | None: ...


# -- accounts from the read model ---------------------------------------------------------------------


def record_of(state: AccountState) -> AccountRecord:
    """The record the serializer reads, from the read model's account. A sync sets `updated_at`,
    `vps_sync_timestamp` and `synced_from_vps` together, so the last two follow the first."""
    v = state.values
    synced = state.updated_at
    return AccountRecord(
        account=state.account,
        name=state.name,
        server=state.server,
        client_id=state.client_id,
        balance=v.balance if v else None,
        equity=v.equity if v else None,
        profit=v.profit if v else None,
        margin=v.margin if v else None,
        margin_free=v.margin_free if v else None,
        margin_level=v.margin_level if v else None,
        leverage=v.leverage if v else None,
        currency=v.currency if v else None,
        trade_allowed=v.trade_allowed if v else None,
        updated_at=synced,
        synced_from_vps=True if synced is not None else None,
        vps_sync_timestamp=synced,
        data_source=state.data_source,
        live_data_at=state.live_data_at,
    )


def account_records(accounts: Accounts, client_id: str | None = None) -> list[AccountRecord]:
    """Every account the API shows, or (client_id given) that client's, ordered by account."""
    if client_id is None:
        return [record_of(s) for s in accounts.values()]
    return [record_of(s) for s in accounts.values() if s.client_id == client_id]


def account_record(accounts: Accounts, account: int) -> AccountRecord | None:
    state = accounts.get(account)
    return None if state is None else record_of(state)


async def known_account(store: AccountLookup, accounts: Accounts, account: int) -> bool:
    """Whether an account may be assigned: the fleet knows it, or the store holds its document (one
    written by another process since the fleet was loaded). Raises StoreError."""
    return account in accounts or await store.get_account(account) is not None


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


def store_is_up(sync: SyncView, records: Sequence[AccountRecord] | None) -> bool:
    """The store is up: its accounts were loaded and the last operation on it did not fail."""
    return records is not None and sync.store_up is not False


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None


@dataclass(frozen=True)
class FleetFreshness:
    """What the summaries need of the accounts' freshness at one instant: counts per state, the worst
    state (None: no accounts) and the oldest age (None: some account never synced, or none exist).
    `agent.api.fleetview` computes it by bisection; `fleet_freshness` from records, account by account."""

    total: int
    by_state: dict[str, int]
    worst: State | None
    oldest_age: float | None


def fleet_freshness(
    records: Sequence[AccountRecord], now: datetime, thresholds: Thresholds
) -> FleetFreshness:
    accounts = accounts_json(records, now, thresholds)
    ages = [a["freshness"]["age_seconds"] for a in accounts]
    oldest = None if None in ages or not ages else max(ages)
    return FleetFreshness(len(accounts), state_counts(accounts), worst_state(accounts), oldest)


def status_summary(
    sync: SyncView, records: Sequence[AccountRecord] | None, now: datetime, thresholds: Thresholds
) -> dict[str, Any]:
    """What the status page shows besides the accounts. `records` None: the accounts are unknown (the
    store has been down since start)."""
    fresh = None if records is None else fleet_freshness(records, now, thresholds)
    return status_of(sync, fresh, now, thresholds)


def status_of(
    sync: SyncView, fresh: FleetFreshness | None, now: datetime, thresholds: Thresholds
) -> dict[str, Any]:
    """`status_summary` from the accounts' freshness (None: the accounts are unknown)."""
    counts: dict[str, Any] | None = None
    if fresh is not None:
        counts = {"total": fresh.total, "by_state": dict(fresh.by_state)}
    health = sync.last_health if sync.bridge_up else None
    run = sync.last_run
    return {
        "time": iso(now),
        "bridge": {
            "up": sync.bridge_up,
            "status": health.status if health else None,
            "response_time": round(health.response_time, 3) if health else None,
        },
        "store": {"up": fresh is not None and sync.store_up is not False},
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
    `records` None: the accounts are unknown (the store has been down since start)."""
    fresh = None if records is None else fleet_freshness(records, now, thresholds)
    return health_of(sync, fresh, now)


def health_of(sync: SyncView, fresh: FleetFreshness | None, now: datetime) -> dict[str, Any]:
    """`health_summary` from the accounts' freshness (None: the accounts are unknown)."""
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
    if fresh is None or sync.store_up is False:
        unhealthy = True
        issues.append("store unreachable")
    if fresh is not None:
        worst = fresh.worst
        if worst is None:
            issues.append("no accounts stored or listed")
        else:
            oldest = fresh.oldest_age
            freshness = {
                "oldest_update": humanize_age(oldest),
                "staleness": worst.value,
                "age_seconds": oldest,
            }
            by_state = {s: fresh.by_state[s.value] for s in State}
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
