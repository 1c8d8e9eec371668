"""POST /api/admin/sync-from-vps and GET /api/admin/mt5-health against a real HTTP server speaking
the seed bridge's JSON (tests/agent/fake_seed_bridge.py)."""

from __future__ import annotations

import asyncio

from agent.store.base import Store
from tests.agent.fake_seed_bridge import SEED_ACCOUNTS
from tests.api.conftest import ADMIN, ALL_TOKENS, CLIENT_A, PASSWORD, READ, Api, MakeApi


async def seed_bridge_accounts(store: Store, client_id: str = CLIENT_A) -> None:
    """The bridge's accounts, provisioned with private fields the way the seed's backend has them."""
    await store.open()
    await store.accounts.put_account_documents(
        [
            {
                "account": a,
                "name": v["name"],
                "client_id": client_id,
                "password": PASSWORD,
                "fund_type": "CORE",
            }
            for a, v in SEED_ACCOUNTS.items()
        ]
    )


async def bridge_api(make_api: MakeApi, bridge_url: str, **overrides) -> Api:
    api = await make_api(seed=False, bridge_url=bridge_url, **{**ALL_TOKENS, **overrides})
    await seed_bridge_accounts(api.store)
    assert await api.agent.service.load_state()  # provisioned after start: the read model takes them in
    return api


async def test_manual_sync_runs_a_cycle(make_api: MakeApi, fake_bridge):
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url)
    _, body = await api.json("POST", "/api/admin/sync-from-vps", ADMIN)
    assert body["status"] == "success"
    assert (body["accounts_synced"], body["total_accounts"]) == (7, 7)
    assert body["duration"] > 0
    assert body["result"]["run_id"] == body["run_id"] and body["result"]["trigger"] == "manual"
    assert body["result"]["summary"].startswith("sync complete: 7/7 accounts synced in ")
    assert sum(r.startswith("info:") for r in bridge.requests) == 7
    # The store now holds what the bridge served, and the API shows it.
    _, listed = await api.json("GET", "/api/v1/accounts", READ)
    assert {a["account"]: a["balance"] for a in listed["accounts"]} == {
        a: v["balance"] for a, v in SEED_ACCOUNTS.items()
    }
    assert {a["freshness"]["state"] for a in listed["accounts"]} == {"fresh"}
    assert {a["data_source"] for a in listed["accounts"]} == {"VPS_LIVE_MT5"}
    _, runs = await api.json("GET", "/api/v1/sync/runs", READ)
    assert runs["total"] == 1 and runs["runs"][0]["run_id"] == body["run_id"]
    # The seed bridge has no batch endpoint: one call per account, and the run says so (as stored).
    assert body["result"]["source"] == "bridge" and body["result"]["fetch_mode"] == "per_account"
    assert {k: runs["runs"][0][k] for k in ("source", "fetch_mode", "bridge_batch")} == {
        "source": "bridge",
        "fetch_mode": "per_account",
        "bridge_batch": False,
    }
    _, ready = await api.json("GET", "/readyz")
    assert ready == {"ready": True, "problems": []}


async def test_second_sync_while_one_runs_is_409_with_running_run_id(make_api: MakeApi, fake_bridge):
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url)
    hung = 891215
    bridge.behaviour[hung] = "hang"
    first = asyncio.create_task(api.call("POST", "/api/admin/sync-from-vps", ADMIN))
    async with asyncio.timeout(10):
        while api.agent.fleet.status.running is None or f"info:{hung}" not in bridge.requests:
            await asyncio.sleep(0.01)
    running_id = api.agent.fleet.status.running.run_id

    _, body = await api.json("POST", "/api/admin/sync-from-vps", ADMIN, status=409)
    assert body["error"]["code"] == "sync_running"
    assert body["error"]["run_id"] == running_id
    _, status = await api.json("GET", "/api/v1/status", READ)
    assert status["sync"]["running"] is True

    bridge.release.set()
    resp = await asyncio.wait_for(first, 10)
    done = await resp.json()
    assert resp.status == 200 and done["run_id"] == running_id
    assert done["status"] == "success" and done["accounts_synced"] == 7


async def test_health_after_a_good_sync_without_calling_the_bridge(make_api: MakeApi, fake_bridge):
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url)
    _, before = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert before["status"] != "healthy"
    assert "no sync cycle has run yet" in before["issues"]
    assert before["last_sync"]["time"] is None
    assert before["data_freshness"]["staleness"] == "critical"  # provisioned, never synced
    assert before["data_freshness"]["oldest_update"] == "never"

    await api.json("POST", "/api/admin/sync-from-vps", ADMIN)
    calls = len(bridge.requests)
    _, health = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert len(bridge.requests) == calls  # the health endpoint does not call the bridge
    assert health["status"] == "healthy" and health["issues"] == []
    assert health["vps_api"]["reachable"] is True and health["vps_api"]["status"] == "healthy"
    assert health["vps_api"]["response_time"] >= 0
    assert health["data_freshness"]["staleness"] == "fresh"
    assert health["data_freshness"]["oldest_update"].endswith("seconds ago")
    assert 0 <= health["data_freshness"]["age_seconds"] < 60
    assert health["last_sync"]["success"] is True
    assert health["last_sync"]["accounts_synced"] == "7/7"
    assert health["last_sync"]["time"].endswith("Z") and health["last_sync"]["duration"] >= 0


async def test_partial_and_skipped_syncs_show_in_health(make_api: MakeApi, fake_bridge):
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url, request_timeout=0.5)
    bridge.behaviour[886557] = "http_500"
    _, body = await api.json("POST", "/api/admin/sync-from-vps", ADMIN)
    assert body["status"] == "partial" and body["accounts_synced"] == 6
    assert body["result"]["failures"] == {"886557": "http_status"}
    _, health = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert health["last_sync"]["success"] is False and health["last_sync"]["accounts_synced"] == "6/7"
    assert health["data_freshness"]["staleness"] == "critical"  # 886557 never had live data
    assert health["status"] == "unhealthy"

    bridge.health_fault = "http_500"
    _, body = await api.json("POST", "/api/admin/sync-from-vps", ADMIN)
    assert body["status"] == "skipped" and body["accounts_synced"] == 0
    _, health = await api.json("GET", "/api/admin/mt5-health", ADMIN)
    assert health["vps_api"] == {"reachable": False, "response_time": None, "status": "unavailable"}
    assert health["status"] == "unhealthy"
    assert any("bridge" in issue for issue in health["issues"])


async def test_shutdown_interrupts_a_running_manual_cycle_and_records_it(make_api: MakeApi, fake_bridge):
    bridge, url = fake_bridge
    api = await bridge_api(make_api, url)
    bridge.behaviour[891215] = "hang"
    post = asyncio.create_task(api.call("POST", "/api/admin/sync-from-vps", ADMIN))
    async with asyncio.timeout(10):
        while api.agent.fleet.status.running is None or "info:891215" not in bridge.requests:
            await asyncio.sleep(0.01)
    run_id = api.agent.fleet.status.running.run_id
    async with asyncio.timeout(15):
        await api.client.close()
        await asyncio.gather(post, return_exceptions=True)
    run = api.agent.fleet.status.last_run
    assert run is not None and run.run_id == run_id
    assert run.result == "failed" and run.error == "cycle interrupted"
    assert api.agent.fleet.status.running is None
