"""Shapes and status codes of every endpoint, against a live agent with a seeded SQLite store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from agent.api.serialize import ACCOUNT_FIELDS
from agent.domain.runs import RunResult, SyncRun
from agent.store.base import StoreError
from tests.api.conftest import (
    ACCOUNTS,
    ADMIN,
    CLIENT_A,
    CLIENT_B,
    EXPECTED_STATE,
    READ,
    Api,
    MakeApi,
    account_documents,
)

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _check_account(a: dict) -> None:
    assert list(a) == list(ACCOUNT_FIELDS)
    assert set(a["freshness"]) == {"state", "age_seconds"}
    for f in ("updated_at", "vps_sync_timestamp", "live_data_at"):
        assert a[f] is None or ISO_Z.match(a[f]), (f, a[f])
    _, minutes, balance, equity, profit, currency = ACCOUNTS[a["account"]]
    assert (a["balance"], a["equity"], a["profit"], a["currency"]) == (balance, equity, profit, currency)
    assert a["freshness"]["state"] == EXPECTED_STATE[a["account"]]
    if minutes is None:
        assert a["freshness"]["age_seconds"] is None and a["data_source"] is None
    else:
        assert a["freshness"]["age_seconds"] == pytest.approx(minutes * 60, abs=30)
        assert a["data_source"] == "VPS_LIVE_MT5"


async def test_v1_accounts_lists_every_account_with_request_time_freshness(api: Api):
    _, body = await api.json("GET", "/api/v1/accounts", READ)
    assert [a["account"] for a in body["accounts"]] == sorted(ACCOUNTS)
    assert body["count"] == len(ACCOUNTS)
    assert body["thresholds"] == {"acceptable_after": 300, "degraded_after": 600, "critical_after": 900}
    assert ISO_Z.match(body["generated_at"])
    for a in body["accounts"]:
        _check_account(a)


@pytest.mark.parametrize("state", ["fresh", "acceptable", "degraded", "critical"])
async def test_v1_accounts_state_filter(api: Api, state: str):
    _, body = await api.json("GET", f"/api/v1/accounts?state={state}", READ)
    expected = sorted(a for a, s in EXPECTED_STATE.items() if s == state)
    assert [a["account"] for a in body["accounts"]] == expected
    assert body["count"] == len(expected)


@pytest.mark.parametrize("query", ["state=stale", "state=", "state=FRESH", "state=fresh&state=critical"])
async def test_v1_accounts_bad_state_is_400(api: Api, query: str):
    _, body = await api.json("GET", f"/api/v1/accounts?{query}", READ, status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_thresholds_come_from_settings(make_api: MakeApi):
    api = await make_api(api_token=READ, freshness="60,120,100000")
    _, body = await api.json("GET", "/api/v1/accounts/100002", READ)  # 20 minutes old
    assert body["freshness"]["state"] == "degraded"


async def test_v1_account_detail(api: Api):
    _, body = await api.json("GET", "/api/v1/accounts/100002", READ)
    _check_account(body)
    _, never = await api.json("GET", "/api/v1/accounts/100003", READ)
    assert never["freshness"] == {"state": "critical", "age_seconds": None}
    assert never["balance"] is None  # never synced: no value, and certainly not 0


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "1e3", "%201", "٣", "1_0", "9223372036854775808"])
async def test_v1_account_bad_id_is_400(api: Api, bad: str):
    _, body = await api.json("GET", f"/api/v1/accounts/{bad}", READ, status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_v1_account_unknown_is_404(api: Api):
    for account in ("999999", "9223372036854775807"):
        _, body = await api.json("GET", f"/api/v1/accounts/{account}", READ, status=404)
        assert body["error"]["code"] == "account_not_found"


async def test_client_accounts_and_unknown_client(api: Api):
    _, body = await api.json("GET", f"/api/client/{CLIENT_A}/mt5-accounts", READ)
    assert [a["account"] for a in body["accounts"]] == [100001, 100002, 100003, 100004]
    assert body["count"] == 4 and ISO_Z.match(body["generated_at"])
    for a in body["accounts"]:
        _check_account(a)
    # A client with no stored accounts is unknown: 404 even for the read token (documented choice).
    for path in ("/api/client/nobody/mt5-accounts", "/api/client/nobody/portfolio"):
        _, err = await api.json("GET", path, READ, status=404)
        assert err["error"]["code"] == "client_not_found"
    _, err = await api.json("GET", f"/api/client/{'x' * 201}/mt5-accounts", READ, status=400)
    assert err["error"]["code"] == "invalid_parameter"


async def test_portfolio_sums_stored_values_per_currency(api: Api):
    _, body = await api.json("GET", f"/api/client/{CLIENT_A}/portfolio", READ)
    assert [a["account"] for a in body["accounts"]] == [100001, 100002, 100003, 100004]
    assert body["totals"] == [
        {"currency": "EUR", "accounts": 1, "balance": 300.0, "equity": 300.0, "profit": 0.0},
        # Decimal sums of what is stored: 10000.10 + 2500.25 is 12500.35 exactly, as the terminal shows.
        {"currency": "USD", "accounts": 2, "balance": 12500.35, "equity": 12450.2, "profit": -50.15},
    ]
    assert (body["count"], body["accounts_summed"], body["accounts_not_summed"]) == (4, 3, 1)
    assert body["not_summed"] == [100003]  # listed above, not summed, counted


async def test_admin_accounts(api: Api):
    _, body = await api.json("GET", "/api/admin/mt5/accounts", ADMIN)
    assert [a["account"] for a in body["accounts"]] == sorted(ACCOUNTS)
    assert body["count"] == len(ACCOUNTS)


async def test_sync_runs_pagination(api: Api):
    t0 = datetime(2025, 10, 24, 15, 0, tzinfo=UTC)
    for i in range(5):
        await api.store.runs.record_run(
            SyncRun(
                run_id=f"run{i}",
                started_at=t0 + timedelta(minutes=5 * i),
                finished_at=t0 + timedelta(minutes=5 * i, seconds=8),
                duration_seconds=7.99,
                result=RunResult.SUCCESS,
                accounts_total=7,
                synced_live=7,
            )
        )
    _, body = await api.json("GET", "/api/v1/sync/runs", READ)
    assert [r["run_id"] for r in body["runs"]] == ["run4", "run3", "run2", "run1", "run0"]
    assert (body["total"], body["limit"], body["offset"]) == (5, 50, 0)
    run = body["runs"][0]
    assert run["started_at"] == "2025-10-24T15:20:00.000Z" and run["result"] == "success"
    assert run["summary"] == "sync complete: 7/7 accounts synced in 7.99s"
    _, page = await api.json("GET", "/api/v1/sync/runs?limit=2&offset=1", ADMIN)
    assert [r["run_id"] for r in page["runs"]] == ["run3", "run2"]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)
    _, end = await api.json("GET", "/api/v1/sync/runs?limit=500&offset=5", READ)
    assert end["runs"] == [] and end["total"] == 5


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=x",
        "limit=-1",
        "limit=",
        "offset=-1",
        "offset=1.5",
        "limit=1&limit=2",
        "offset=99999999999999999999",
    ],
)
async def test_sync_runs_bad_paging_is_400(api: Api, query: str):
    _, body = await api.json("GET", f"/api/v1/sync/runs?{query}", READ, status=400)
    assert body["error"]["code"] == "invalid_parameter"


async def test_status_summary(api: Api):
    _, body = await api.json("GET", "/api/v1/status", READ)
    assert body["store"] == {"up": True}
    assert body["bridge"] == {"up": None, "status": None, "response_time": None}  # no cycle yet
    assert body["sync"] == {"running": False, "last_success_at": None, "last": None}
    assert body["accounts"] == {
        "total": 5,
        "by_state": {"fresh": 1, "acceptable": 1, "degraded": 1, "critical": 2},
    }


async def test_ops_endpoints_need_no_auth(api: Api):
    _, alive = await api.json("GET", "/healthz")
    assert alive == {"status": "alive"}
    _, ready = await api.json("GET", "/readyz", status=503)  # no cycle has run yet
    assert ready["ready"] is False and "no sync cycle has run yet" in ready["problems"]
    _, doc = await api.json("GET", "/api/openapi.json")
    assert doc["openapi"].startswith("3.")
    page = await api.call("GET", "/")
    assert page.status == 200 and page.content_type == "text/html"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "<table" in await page.text()


async def test_unknown_route_and_wrong_method_are_json(api: Api):
    _, body = await api.json("GET", "/api/v1/nope", READ, status=404)
    assert body == {"error": {"code": "not_found", "message": "no such endpoint"}}
    resp, body = await api.json("DELETE", "/api/v1/accounts", READ, status=405)
    assert body["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]
    resp, body = await api.json("GET", "/api/admin/sync-from-vps", ADMIN, status=405)
    assert resp.headers["Allow"] == "POST"


class _FailingConcern:
    """One concern of the real store whose `reads` fail with the owner's `exc` once it is set."""

    def __init__(self, inner, owner, reads: set[str]) -> None:
        self._inner, self._owner, self._reads = inner, owner, reads

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in self._reads:
            return attr

        async def read(*args, **kw):
            if self._owner.exc is not None:
                raise self._owner.exc
            return await attr(*args, **kw)

        return read


class _BrokenStore:
    """Wraps the real store; once `exc` is set, account and run reads fail with it."""

    def __init__(self, inner) -> None:
        self._inner, self.exc = inner, None
        self.accounts = _FailingConcern(inner.accounts, self, {"get_accounts", "get_account"})
        self.runs = _FailingConcern(inner.runs, self, {"list_runs"})

    def __getattr__(self, name):
        return getattr(self._inner, name)


async def test_store_down_is_503_json_and_status_still_answers(make_api: MakeApi, tmp_path):
    """Account reads come from the read model, loaded from the store: while the store has been down since
    start its accounts are unknown (503, its details only in the log); the sync history is read from the
    store on each request (503 as soon as it fails). Once loaded, the read model answers on its own."""
    from agent.store import open_store

    inner = open_store(f"sqlite:///{tmp_path / 'broken.db'}")
    await inner.open()
    await inner.accounts.put_account_documents(account_documents(datetime.now(UTC)))
    store = _BrokenStore(inner)
    store.exc = StoreError("SQLite read failed on /secret/path.db")
    api = await make_api(store=store, api_token=READ)
    for path in (
        "/api/v1/accounts",
        "/api/v1/accounts/100001",
        f"/api/client/{CLIENT_B}/mt5-accounts",
        "/api/v1/sync/runs",
    ):
        _, body = await api.json("GET", path, READ, status=503)
        assert body["error"]["code"] == "store_unavailable"
        assert "/secret/path.db" not in body["error"]["message"]
    _, status = await api.json("GET", "/api/v1/status", READ)
    assert status["store"] == {"up": False} and status["accounts"] is None

    store.exc = None
    assert await api.agent.service.ensure_ready()  # what the next cycle does first
    store.exc = StoreError("SQLite read failed on /secret/path.db")
    _, listed = await api.json("GET", "/api/v1/accounts", READ)
    assert listed["count"] == len(ACCOUNTS)
    await api.json("GET", "/api/v1/sync/runs", READ, status=503)


async def test_unexpected_exception_is_json_500_without_traceback(make_api: MakeApi, tmp_path):
    from agent.store import open_store

    store = _BrokenStore(open_store(f"sqlite:///{tmp_path / 'broken.db'}"))
    api = await make_api(store=store, api_token=READ)
    store.exc = RuntimeError("boom-internal-detail")
    _, body = await api.json("GET", "/api/v1/sync/runs", READ, status=500)
    assert body == {"error": {"code": "internal_error", "message": "internal server error"}}


async def test_large_list_is_serialised_off_the_loop_with_the_same_answer(make_api: MakeApi):
    """Above OFFLOAD_ABOVE accounts the pieces are built in a thread: same shape, every account."""
    from agent.api.common import OFFLOAD_ABOVE

    api = await make_api(api_token=READ)
    n = OFFLOAD_ABOVE + 50
    big = [
        {"account": 500_000 + i, "name": f"bulk {i}", "balance": float(i), "password": "x"} for i in range(n)
    ]
    await api.store.accounts.put_account_documents(big)
    assert await api.agent.service.load_state()  # the read model takes the store's documents in
    _, body = await api.json("GET", "/api/v1/accounts", READ)
    bulk = [a for a in body["accounts"] if a["account"] >= 500_000]
    assert len(bulk) == n and body["count"] == n + len(ACCOUNTS)
    assert bulk[7]["balance"] == 7.0 and bulk[7]["freshness"]["state"] == "critical"
    assert all("password" not in a for a in bulk)
    _, crit = await api.json("GET", "/api/v1/accounts?state=critical", READ)
    assert {a["account"] for a in crit["accounts"]} >= {a["account"] for a in bulk}
