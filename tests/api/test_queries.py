"""The API's answers as plain functions (agent.api.queries), without HTTP; the one schema (the
serializer's allow-list is the model's field list); the generated OpenAPI document."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from agent.api import queries, schema
from agent.api.openapi import build_openapi, component_schemas
from agent.api.serialize import ACCOUNT_FIELDS, account_json, run_json
from agent.config import load_settings
from agent.domain.accounts import AccountRecord, AccountValues, DataSource, Reason
from agent.domain.freshness import Thresholds
from agent.domain.runs import RunResult, SyncRun
from agent.sync.fleet import AccountState

NOW = datetime(2025, 10, 24, 12, 0, tzinfo=UTC)
LIMITS = Thresholds()
API_DIR = Path(__file__).resolve().parents[2] / "agent" / "api"


@dataclass
class Health:
    status: str = "healthy"
    response_time: float = 0.01234


@dataclass
class Sync:
    bridge_up: bool | None = None
    store_up: bool | None = True
    last_health: Health | None = None
    last_run: SyncRun | None = None
    last_success_at: datetime | None = None
    running: SyncRun | None = None


def record(account: int, minutes: float | None, **values: Any) -> AccountRecord:
    live = None if minutes is None else NOW - timedelta(minutes=minutes)
    base: dict[str, Any] = {"balance": 100.0, "equity": 101.0, "profit": 1.0, "currency": "USD"}
    return AccountRecord(account=account, live_data_at=live, **({**base, **values} if live else values))


def run(result: RunResult, **kw: object) -> SyncRun:
    return SyncRun(
        run_id="r1",
        started_at=NOW - timedelta(seconds=3),
        finished_at=NOW,
        duration_seconds=2.5,
        result=result,
        accounts_total=2,
        synced_live=2 if result is RunResult.SUCCESS else 1,
        **kw,  # type: ignore[arg-type]
    )


def validator(model: type) -> Draft202012Validator:
    defs = component_schemas([model])
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{model.__name__}", "components": {"schemas": defs}}
    )


def _imports(path: Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included (they are cycles too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_queries_know_no_http():
    assert not any(m.split(".")[0] == "aiohttp" for m in _imports(API_DIR / "queries.py"))


def test_no_api_module_imports_the_composition_root():
    for path in API_DIR.glob("*.py"):
        assert not any(m == "agent.app" or m.startswith("agent.app.") for m in _imports(path)), path.name


def test_accounts_come_from_the_read_model_with_never_synced_ones_as_nulls():
    values = AccountValues(balance=5.0, equity=6.0, currency="EUR", leverage=100)
    fleet = {
        1: AccountState(account=1, name="One", server="S1"),  # listed, never synced
        2: AccountState(
            account=2,
            name="Two",
            client_id="c2",
            values=values,
            data_source=DataSource.LIVE.value,
            live_data_at=NOW,
            updated_at=NOW,
        ),
    }
    never, synced = queries.account_records(fleet)
    assert (never.account, never.name, never.server, never.balance, never.live_data_at) == (
        1,
        "One",
        "S1",
        None,
        None,
    )
    assert never.synced_from_vps is None and never.vps_sync_timestamp is None
    assert (synced.balance, synced.equity, synced.currency, synced.leverage) == (5.0, 6.0, "EUR", 100)
    assert (synced.updated_at, synced.vps_sync_timestamp, synced.synced_from_vps) == (NOW, NOW, True)
    assert [r.account for r in queries.account_records(fleet, "c2")] == [2]
    assert queries.account_records(fleet, "nobody") == []
    assert queries.account_record(fleet, 3) is None
    body = account_json(never, NOW, LIMITS)
    assert body["freshness"] == {"state": "critical", "age_seconds": None}
    assert "client_id" not in account_json(synced, NOW, LIMITS)


async def test_an_account_is_known_to_the_fleet_or_to_the_store():
    class Documents:
        async def get_account(self, account: int) -> AccountRecord | None:
            return AccountRecord(account=account) if account == 9 else None

    fleet = {1: AccountState(account=1)}
    assert await queries.known_account(Documents(), fleet, 1)  # type: ignore[arg-type]
    assert await queries.known_account(Documents(), fleet, 9)  # type: ignore[arg-type]
    assert not await queries.known_account(Documents(), fleet, 2)  # type: ignore[arg-type]


def test_account_list_filters_by_state_and_validates_against_the_schema():
    records = [record(1, 1.0), record(2, 12.0), record(3, None)]
    body = queries.account_list(records, NOW, LIMITS)
    assert [a["freshness"]["state"] for a in body["accounts"]] == ["fresh", "degraded", "critical"]
    assert body["count"] == 3 and body["generated_at"] == "2025-10-24T12:00:00.000Z"
    assert not list(validator(schema.AccountList).iter_errors(body))
    critical = queries.account_list(records, NOW, LIMITS, "critical")
    assert [a["account"] for a in critical["accounts"]] == [3] and critical["count"] == 1


def test_portfolio_sums_only_complete_accounts():
    records = [record(1, 1.0), record(2, 1.0, currency="EUR"), record(3, None), record(4, 1.0, profit=None)]
    body = queries.portfolio(records, NOW, LIMITS)
    assert body["totals"] == [
        {"currency": "EUR", "accounts": 1, "balance": 100.0, "equity": 101.0, "profit": 1.0},
        {"currency": "USD", "accounts": 1, "balance": 100.0, "equity": 101.0, "profit": 1.0},
    ]
    assert (body["accounts_summed"], body["accounts_not_summed"], body["not_summed"]) == (2, 2, [3, 4])
    assert not list(validator(schema.Portfolio).iter_errors(body))


def test_health_summary_without_store_without_bridge_without_runs():
    body = queries.health_summary(Sync(), None, NOW, LIMITS)
    assert body["status"] == "unhealthy"
    assert body["issues"] == [
        "VPS bridge not contacted yet: no sync cycle has run",
        "store unreachable",
        "no sync cycle has run yet",
    ]
    assert not list(validator(schema.Health).iter_errors(body))
    failing = queries.health_summary(Sync(store_up=False), [record(1, 1.0)], NOW, LIMITS)
    assert "store unreachable" in failing["issues"] and failing["status"] == "unhealthy"
    assert failing["data_freshness"]["staleness"] == "fresh"  # what the read model knows still shows


def test_health_summary_healthy_then_degraded_then_critical():
    sync = Sync(bridge_up=True, last_health=Health(), last_run=run(RunResult.SUCCESS))
    fresh = queries.health_summary(sync, [record(1, 1.0)], NOW, LIMITS)
    assert fresh["status"] == "healthy" and fresh["issues"] == []
    assert fresh["vps_api"] == {"reachable": True, "response_time": 0.012, "status": "healthy"}
    assert fresh["data_freshness"]["oldest_update"] == "1 minute ago"
    degraded = queries.health_summary(sync, [record(1, 1.0), record(2, 11.0)], NOW, LIMITS)
    assert degraded["status"] == "degraded"
    assert degraded["data_freshness"]["staleness"] == "degraded"
    never = queries.health_summary(sync, [record(1, 1.0), record(2, None)], NOW, LIMITS)
    assert never["status"] == "unhealthy" and never["data_freshness"]["oldest_update"] == "never"
    for body in (fresh, degraded, never):
        assert not list(validator(schema.Health).iter_errors(body))


def test_status_summary_counts_and_store_down():
    sync = Sync(bridge_up=False, last_run=run(RunResult.PARTIAL), last_success_at=NOW)
    body = queries.status_summary(sync, [record(1, 1.0), record(2, None)], NOW, LIMITS)
    assert body["accounts"] == {
        "total": 2,
        "by_state": {"fresh": 1, "acceptable": 0, "degraded": 0, "critical": 1},
    }
    assert body["bridge"] == {"up": False, "status": None, "response_time": None}
    assert body["sync"]["last"]["accounts_synced"] == 1
    assert body["store"] == {"up": True}
    down = queries.status_summary(sync, None, NOW, LIMITS)  # the store's accounts were never loaded
    assert down["store"] == {"up": False} and down["accounts"] is None
    failing = queries.status_summary(Sync(store_up=False), [record(1, 1.0)], NOW, LIMITS)
    assert failing["store"] == {"up": False} and failing["accounts"]["total"] == 1  # the read model answers
    for b in (body, down, failing):
        assert not list(validator(schema.Status).iter_errors(b))


def test_readiness_and_sync_result():
    assert queries.readiness(store_up=True, cycle_ran=True) == (True, {"ready": True, "problems": []})
    ready, body = queries.readiness(store_up=False, cycle_ran=False)
    assert not ready and body["problems"] == ["store unreachable", "no sync cycle has run yet"]
    result = queries.sync_result(run(RunResult.PARTIAL, failures={"2": Reason.TIMEOUT.value}))
    assert (result["status"], result["accounts_synced"], result["total_accounts"]) == ("partial", 1, 2)
    assert not list(validator(schema.SyncResult).iter_errors(result))


def test_the_allow_list_is_the_model():
    assert ACCOUNT_FIELDS == tuple(schema.Account.model_fields)
    out = account_json(
        record(1, 1.0, client_id="secret-client", data_source=DataSource.LIVE.value), NOW, LIMITS
    )
    assert tuple(out) == ACCOUNT_FIELDS and "client_id" not in out
    assert not list(validator(schema.Account).iter_errors(out))


@pytest.mark.parametrize(
    ("field_name", "bad"),
    [("data_source", "SOMETHING_ELSE"), ("leverage", 1.5), ("balance", float("nan")), ("trade_allowed", 1)],
)
def test_malformed_stored_values_are_null(field_name: str, bad: object):
    out = account_json(record(1, 1.0, **{field_name: bad}), NOW, LIMITS)
    assert out[field_name] is None
    assert not list(validator(schema.Account).iter_errors(out))


def test_run_json_matches_its_schema():
    out = run_json(run(RunResult.PARTIAL, trigger="manual", failures={"7": "timeout"}, error="x"))
    assert not list(validator(schema.SyncRun).iter_errors(out))


def test_document_is_openapi_31_with_named_enums():
    app = web.Application()
    settings = load_settings(store_url="sqlite:///:memory:", admin_token="a" * 32)
    from agent.api import accounts, admin, ops, runs, seed

    for area in (accounts, admin, ops, runs, seed):
        app.add_routes(area.routes)
    doc = build_openapi(app, settings)
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    assert schemas["DataSource"]["enum"] == ["VPS_LIVE_MT5", "VPS_STORED"]
    assert schemas["FreshnessState"]["enum"] == ["fresh", "acceptable", "degraded", "critical"]
    assert schemas["Reason"]["enum"] == [r.value for r in Reason]
    assert schemas["RunResult"]["enum"] == [r.value for r in RunResult]
    assert schemas["Trigger"]["enum"] == ["schedule", "manual", "cli", "bench"]
    assert list(schemas["Account"]["properties"]) == list(ACCOUNT_FIELDS)
    assert schemas["Account"]["additionalProperties"] is False
    assert set(schemas["Account"]["required"]) == set(ACCOUNT_FIELDS)
    json.dumps(doc)  # serialisable as is


def test_an_undescribed_route_cannot_be_registered_silently():
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/api/v1/undocumented", handler)
    settings = load_settings(store_url="sqlite:///:memory:")
    with pytest.raises(RuntimeError, match="GET /api/v1/undocumented has no OpenAPI description"):
        build_openapi(app, settings)
