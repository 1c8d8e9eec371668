"""The accounts the API shows are the ones /metrics and the alert rules see (issue 10 finding 8): a listed
account that never synced is `critical` with null values everywhere, never absent from the API only;
and an operator can assign accounts to clients (`PUT/DELETE /api/admin/mt5/accounts/{account}/client`).
Against a real agent and a real HTTP server speaking the seed bridge's JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.domain.runs import RunResult
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.api.conftest import ADMIN, ALL_TOKENS, METRICS, READ, Api, MakeApi, make_jwt

LIVE, FALLBACK, FAILING, NEVER, STORED_ONLY = 886557, 886066, 886602, 885822, 886528


async def _fleet_api(make_api: MakeApi, fake_bridge: Any) -> tuple[Api, Any]:
    bridge, url = fake_bridge
    api = await make_api(seed=False, bridge_url=url, metrics_token=METRICS, **ALL_TOKENS)
    return api, bridge


async def _live_fleet(make_api: MakeApi, fake_bridge: Any) -> tuple[Api, Any]:
    """Live, stored-fallback, failing, never-synced and stored-only-never-live accounts, after two cycles."""
    api, bridge = await _fleet_api(make_api, fake_bridge)
    bridge.behaviour.update({NEVER: "http_500", STORED_ONLY: "no_live_data"})
    assert (await api.agent.service.run_cycle()).result is RunResult.PARTIAL
    bridge.behaviour.update({FALLBACK: "no_live_data", FAILING: "http_500"})
    assert (await api.agent.service.run_cycle()).result is RunResult.PARTIAL
    return api, bridge


def _at(offset: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + offset


async def _scrape(api: Api) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    resp = await api.call("GET", "/metrics", METRICS)
    assert resp.status == 200
    out: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def _metrics_view(scrape: dict[str, dict[frozenset[tuple[str, str]], float]]) -> dict[int, dict[str, Any]]:
    """What /metrics and the alert rules see per account: the accounts with a freshness series (the rules
    join on `group by (account) (mt5_account_freshness_state)`), the state at 1, the data source at 1."""
    view: dict[int, dict[str, Any]] = {}
    for labels, value in scrape["mt5_account_freshness_state"].items():
        lbl = dict(labels)
        entry = view.setdefault(int(lbl["account"]), {"state": None, "data_source": None})
        if value == 1:
            assert entry["state"] is None, ("two states at 1", lbl)
            entry["state"] = lbl["state"]
    for labels, value in scrape.get("mt5_account_data_source", {}).items():
        lbl = dict(labels)
        if value == 1:
            view[int(lbl["account"])]["data_source"] = lbl["source"]
    return view


def _api_view(accounts: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {
        a["account"]: {"state": a["freshness"]["state"], "data_source": a["data_source"]} for a in accounts
    }


@pytest.mark.parametrize("minutes", [0, 6, 11, 16])
async def test_api_metrics_and_alert_rules_see_the_same_accounts_and_states(
    make_api: MakeApi, fake_bridge: Any, minutes: int
):
    """Before the fix: the never-synced account was in /metrics (critical) and absent from the API."""
    api, _ = await _live_fleet(make_api, fake_bridge)
    api.agent.service.clock = _at(timedelta(minutes=minutes))  # the API and the scrape share this clock

    metrics = _metrics_view(await _scrape(api))
    _, listed = await api.json("GET", "/api/v1/accounts", READ)
    _, admin = await api.json("GET", "/api/admin/mt5/accounts", ADMIN)
    assert set(metrics) == set(SEED_ACCOUNTS)
    assert _api_view(listed["accounts"]) == metrics
    assert _api_view(admin["accounts"]) == metrics
    expected_live = {0: "fresh", 6: "acceptable", 11: "degraded", 16: "critical"}[minutes]
    assert metrics[LIVE]["state"] == expected_live and metrics[FAILING]["state"] == expected_live
    assert metrics[NEVER] == {"state": "critical", "data_source": None}
    assert metrics[STORED_ONLY] == {"state": "critical", "data_source": "VPS_STORED"}
    assert metrics[FALLBACK]["data_source"] == "VPS_STORED"

    _, status = await api.json("GET", "/api/v1/status", READ)
    states = status["accounts"]["by_state"]
    by_state = {s: sum(1 for v in metrics.values() if v["state"] == s) for s in states}
    assert status["accounts"] == {"total": len(SEED_ACCOUNTS), "by_state": by_state}
    _, health = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert health["data_freshness"]["staleness"] == "critical"
    assert health["data_freshness"]["oldest_update"] == "never"


async def test_a_never_synced_account_is_critical_with_null_values(make_api: MakeApi, fake_bridge: Any):
    api, _ = await _live_fleet(make_api, fake_bridge)
    # No document: the agent knows it from the bridge.
    assert await api.store.accounts.get_account(NEVER) is None

    _, one = await api.json("GET", f"/api/v1/accounts/{NEVER}", READ)
    assert one["freshness"] == {"state": "critical", "age_seconds": None}
    assert one["data_source"] is None and one["live_data_at"] is None and one["updated_at"] is None
    numbers = ("balance", "equity", "profit", "margin", "margin_free", "margin_level", "leverage")
    assert all(one[f] is None for f in numbers)  # null, never 0
    assert one["name"] == SEED_ACCOUNTS[NEVER]["name"]  # what the bridge's listing said
    _, critical = await api.json("GET", "/api/v1/accounts?state=critical", READ)
    assert NEVER in [a["account"] for a in critical["accounts"]]
    # A client JWT sees only its own client's accounts: an unassigned account is not one of them.
    token = make_jwt("client_x")
    await api.json("GET", f"/api/v1/accounts/{NEVER}", token, status=403)
    _, mine = await api.json("GET", "/api/v1/accounts", token)
    assert mine["accounts"] == []
    # Neither stored nor listed: still 404.
    await api.json("GET", "/api/v1/accounts/999999", READ, status=404)


async def test_assigning_a_never_synced_account_opens_the_client_paths(make_api: MakeApi, fake_bridge: Any):
    api, bridge = await _live_fleet(make_api, fake_bridge)
    path = f"/api/admin/mt5/accounts/{NEVER}/client"

    _, view = await api.json("PUT", path, ADMIN, body={"client_id": "client_x"})
    assert view["account"] == NEVER and view["freshness"]["state"] == "critical"
    assert view["balance"] is None and "client_id" not in view and "client_x" not in str(view)
    record = await api.store.accounts.get_account(NEVER)
    assert record is not None and record.client_id == "client_x" and record.balance is None

    _, client = await api.json("GET", "/api/client/client_x/mt5-accounts", READ)
    assert [a["account"] for a in client["accounts"]] == [NEVER]
    assert client["accounts"][0]["name"] == SEED_ACCOUNTS[NEVER]["name"]
    token = make_jwt("client_x")
    await api.json("GET", f"/api/v1/accounts/{NEVER}", token)
    _, portfolio = await api.json("GET", "/api/client/client_x/portfolio", token)
    assert portfolio["not_summed"] == [NEVER]  # listed, no values to sum

    # The account then syncs: its values arrive, the assignment stays.
    bridge.behaviour.pop(NEVER)
    await api.agent.service.run_cycle()
    _, client = await api.json("GET", "/api/client/client_x/mt5-accounts", token)
    [synced] = client["accounts"]
    assert synced["balance"] == SEED_ACCOUNTS[NEVER]["balance"] and synced["freshness"]["state"] == "fresh"

    # Reassigning moves it; unassigning leaves the client with nothing.
    await api.json("PUT", path, ADMIN, body={"client_id": "client_y"})
    await api.json("GET", "/api/client/client_x/mt5-accounts", READ, status=404)
    _, view = await api.json("DELETE", path, ADMIN)
    assert view["account"] == NEVER and view["balance"] == SEED_ACCOUNTS[NEVER]["balance"]
    await api.json("GET", "/api/client/client_y/mt5-accounts", READ, status=404)
    assert (await api.store.accounts.get_account(NEVER)).client_id is None  # type: ignore[union-attr]


async def test_assigning_a_synced_account_keeps_its_values(make_api: MakeApi, fake_bridge: Any):
    api, _ = await _live_fleet(make_api, fake_bridge)
    before = await api.store.accounts.get_account(LIVE)
    await api.json("PUT", f"/api/admin/mt5/accounts/{LIVE}/client", ADMIN, body={"client_id": "c 1~"})
    after = await api.store.accounts.get_account(LIVE)
    assert before is not None and after is not None
    assert after.client_id == "c 1~" and {**vars(after), "client_id": None} == vars(before)


async def test_unassigning_a_listed_account_without_document_creates_nothing(
    make_api: MakeApi, fake_bridge: Any
):
    api, _ = await _live_fleet(make_api, fake_bridge)
    _, view = await api.json("DELETE", f"/api/admin/mt5/accounts/{NEVER}/client", ADMIN)
    assert view["account"] == NEVER
    assert await api.store.accounts.get_account(NEVER) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'"client_x"',
        b'{"client_id": ""}',
        b'{"client_id": 5}',
        b'{"client_id": null}',
        b'{"client_id": "a/b"}',
        b'{"client_id": "' + b"x" * 129 + b'"}',
        b'{"client_id": "tab\\there"}',
        b'{"client_id": "\\u0000"}',
        b'{"client_id": "caf\\u00e9"}',
        b'{"client_id": "\\ud800"}',
        b'{"client_id": "ok", "extra": 1}',
        b"[" * 4000,  # nesting past the parser's recursion limit (within the size cap): still a 400
    ],
    ids=lambda b: b[:24].decode("latin-1"),
)
async def test_a_bad_assignment_body_is_400_and_writes_nothing(
    make_api: MakeApi, fake_bridge: Any, body: bytes, caplog: pytest.LogCaptureFixture
):
    api, _ = await _live_fleet(make_api, fake_bridge)
    caplog.clear()
    resp = await api.client.put(
        f"/api/admin/mt5/accounts/{LIVE}/client",
        data=body,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    err = await resp.json()
    assert resp.status == 400, err
    assert err["error"]["code"] in ("invalid_body", "invalid_parameter")
    assert (await api.store.accounts.get_account(LIVE)).client_id is None  # type: ignore[union-attr]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_assignment_errors(make_api: MakeApi, fake_bridge: Any):
    api, _ = await _live_fleet(make_api, fake_bridge)
    good = {"client_id": "client_x"}
    for bad in ("abc", "0", "-1", "1.5", "9223372036854775808", "٣"):
        _, err = await api.json("PUT", f"/api/admin/mt5/accounts/{bad}/client", ADMIN, body=good, status=400)
        assert err["error"]["code"] == "invalid_parameter"
        await api.json("DELETE", f"/api/admin/mt5/accounts/{bad}/client", ADMIN, status=400)
    for method in ("PUT", "DELETE"):  # neither stored nor listed
        _, err = await api.json(method, "/api/admin/mt5/accounts/999999/client", ADMIN, body=good, status=404)
        assert err["error"]["code"] == "account_not_found"
    assert await api.store.accounts.get_account(999999) is None
    # Not the admin token: nothing changes.
    for token, status in ((None, 401), (READ, 403), (make_jwt("client_x"), 403), (METRICS, 401)):
        await api.json("PUT", f"/api/admin/mt5/accounts/{LIVE}/client", token, body=good, status=status)
    assert (await api.store.accounts.get_account(LIVE)).client_id is None  # type: ignore[union-attr]
    # Too big a body: 413, read no further.
    resp = await api.client.put(
        f"/api/admin/mt5/accounts/{LIVE}/client",
        data=b'{"client_id": "' + b"x" * 10_000 + b'"}',
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "payload_too_large"


async def test_admin_assignment_is_503_without_an_admin_token(make_api: MakeApi, fake_bridge: Any):
    _, url = fake_bridge
    api = await make_api(seed=False, bridge_url=url, api_token=READ)
    _, err = await api.json(
        "PUT", f"/api/admin/mt5/accounts/{LIVE}/client", READ, body={"client_id": "x"}, status=503
    )
    assert err["error"]["code"] == "admin_disabled"
