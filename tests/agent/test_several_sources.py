"""Several bridges in one agent (issue 15): each source synced, probed and retried on its own.

Real simulated bridges on loopback; one of them is reached through a real proxy that can hang every
request. While it hangs, the other source's cycles keep their schedule (measured: the largest gap between
two of its finished cycles) and its accounts stay fresh, its `mt5_bridge_up{source}` stays 1 while the hung
one's goes 0. A login two sources list is held by the first to list it, counted and never merged.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import generate_latest

from agent.app import Agent, build_agent, close_agent, start_background
from agent.config import ENV_PREFIX, load_settings
from agent.domain.runs import RunResult, SyncRun
from bridge.api import create_app
from bridge.simulated import simulated_pool
from tests.e2e.fault_proxy import Fault, FaultProxy

A_LOGINS = [5001, 5002, 5003]
B_LOGINS = [6001, 6002]


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


async def _bridge(logins: list[int], seed: int = 3) -> tuple[TestServer, object]:
    pool = simulated_pool(logins, seed=seed)
    server = TestServer(create_app(pool, call_timeout=0.5), host="127.0.0.1")
    await server.start_server()
    return server, pool


@pytest.fixture
async def bridges() -> AsyncIterator[tuple[str, FaultProxy]]:
    a, pool_a = await _bridge(A_LOGINS)
    b, pool_b = await _bridge(B_LOGINS)
    proxy = FaultProxy(str(b.make_url("")))
    await proxy.start()
    try:
        yield str(a.make_url("")).rstrip("/"), proxy
    finally:
        proxy.set(None)
        await proxy.close()
        await a.close()
        await b.close()
        pool_a.close()  # type: ignore[attr-defined]
        pool_b.close()  # type: ignore[attr-defined]


def _config(tmp_path: Path, a_url: str, b_url: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[agent]
store_url = "sqlite:///{tmp_path / "agent.db"}"
schedule = "300ms"
request_timeout = 1.0
cycle_deadline = 1.5
health_retries = 1
probe_interval = 0.3
positions_interval = "off"

[[sources]]
name = "vps-a"
kind = "bridge"
url = "{a_url}"

[[sources]]
name = "vps-b"
kind = "bridge"
url = "{b_url}"
""",
        encoding="utf-8",
    )
    return path


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    started = time.monotonic()
    while not pred():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.02)


def _metric(agent: Agent, series: str) -> float | None:
    assert agent.metrics is not None
    text = generate_latest(agent.metrics.registry).decode()
    m = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def test_a_hung_source_never_delays_the_other(tmp_path: Path, bridges: tuple[str, FaultProxy]) -> None:
    a_url, proxy = bridges
    agent = build_agent(load_settings(_config(tmp_path, a_url, proxy.url)))
    a, b = agent.services
    assert (a.source.name, b.source.name) == ("vps-a", "vps-b")
    finished: dict[str, list[tuple[float, SyncRun]]] = {"vps-a": [], "vps-b": []}
    for svc in agent.services:
        svc.listeners.append(lambda run, n=svc.source.name: finished[n].append((time.monotonic(), run)))
    start_background(agent)
    try:
        fleet = agent.fleet
        await _until(lambda: set(A_LOGINS + B_LOGINS) <= set(fleet.snapshot().accounts), 10, "both synced")
        snap = fleet.snapshot()
        assert {a: snap.accounts[a].source for a in A_LOGINS + B_LOGINS} == {
            **dict.fromkeys(A_LOGINS, "vps-a"),
            **dict.fromkeys(B_LOGINS, "vps-b"),
        }
        assert agent.metrics is not None
        text = generate_latest(agent.metrics.registry).decode()
        for login, source in ((5001, "vps-a"), (6001, "vps-b")):  # the info series says which source
            assert re.search(
                rf'^mt5_account_info{{account="{login}",[^}}]*source="{source}"}} 1\.0$', text, re.M
            )

        proxy.set(Fault("hang", re.compile(".*")))  # every request to vps-b hangs from now on
        hung_at, hung_wall = time.monotonic(), datetime.now(UTC)
        await _until(lambda: fleet.sources["vps-b"].bridge_up is False, 5, "vps-b seen down")
        window = 4.0
        await asyncio.sleep(window)  # the measurement window: vps-b hangs throughout
        a_runs = [(t, r) for t, r in finished["vps-a"] if t >= hung_at]
        b_runs = [(t, r) for t, r in finished["vps-b"] if t >= hung_at]
        times = [hung_at] + [t for t, _ in a_runs]
        gap = max(y - x for x, y in itertools.pairwise(times))
        longest = max([r.duration_seconds or 0 for _, r in b_runs] or [0])
        print(
            f"vps-a: {len(a_runs)} cycles in {window:g}s with vps-b hung, largest gap {gap:.2f}s; vps-b: "
            f"{len(b_runs)} cycles, the longest {longest:.2f}s"
        )
        assert len(a_runs) >= 6 and all(r.result is RunResult.SUCCESS for _, r in a_runs)
        assert gap < 1.0  # vps-b's hung cycles (each >= request_timeout 1 s) never held vps-a's
        # every vps-b cycle begun after the hang is skipped (the one in flight at the hang may end otherwise)
        begun_hung = [r for _, r in b_runs if r.started_at >= hung_wall]
        assert begun_hung and all(r.result is RunResult.SKIPPED for r in begun_hung)
        now = datetime.now(UTC)
        snap = fleet.snapshot()
        for login in A_LOGINS:  # still fresh: live data from the last second or so
            live = snap.accounts[login].live_data_at
            assert live is not None and (now - live).total_seconds() < 2.0, login
        for login in B_LOGINS:  # no live data since the hang
            live = snap.accounts[login].live_data_at
            assert live is not None and (now - live).total_seconds() > window, login
        assert _metric(agent, 'mt5_bridge_up{source="vps-a"}') == 1.0
        assert _metric(agent, 'mt5_bridge_up{source="vps-b"}') == 0.0
        assert fleet.status.bridge_up is False  # the fleet as a whole: one source is down
    finally:
        proxy.set(None)
        await close_agent(agent)


async def test_a_login_two_sources_list_is_held_by_the_first(tmp_path: Path) -> None:
    a, pool_a = await _bridge(A_LOGINS)
    b, pool_b = await _bridge([A_LOGINS[0], *B_LOGINS])  # 5001 listed by both
    agent = build_agent(
        load_settings(_config(tmp_path, str(a.make_url("")).rstrip("/"), str(b.make_url("")).rstrip("/")))
    )
    try:
        first, second = agent.services
        assert (await first.run_cycle()).result is RunResult.SUCCESS
        run = await second.run_cycle()
        assert run.result is RunResult.SUCCESS and run.accounts_total == len(B_LOGINS)  # 5001 left out
        snap = agent.fleet.snapshot()
        assert snap.accounts[A_LOGINS[0]].source == "vps-a"
        assert agent.fleet.sources["vps-b"].duplicate_accounts == 1
        assert _metric(agent, 'mt5_source_duplicate_accounts{source="vps-b"}') == 1.0
        assert _metric(agent, 'mt5_source_duplicate_accounts{source="vps-a"}') == 0.0
        # Again: still left out, still counted (a gauge of the last listing), the holder unchanged.
        await second.run_cycle()
        assert agent.fleet.snapshot().accounts[A_LOGINS[0]].source == "vps-a"
        assert _metric(agent, 'mt5_source_duplicate_accounts{source="vps-b"}') == 1.0
    finally:
        await close_agent(agent)
        await a.close()
        await b.close()
        pool_a.close()  # type: ignore[attr-defined]
        pool_b.close()  # type: ignore[attr-defined]


def test_stored_accounts_belong_to_the_only_source_until_there_are_several() -> None:
    """After a restart with the bridge down, the accounts loaded from the store must still carry the source
    (mt5_account_info's `source` is what Alertmanager's inhibition by MT5BridgeDown matches on)."""
    from agent.domain.accounts import AccountRecord
    from agent.sync.fleet import Fleet

    one = Fleet()
    one.register_source("bridge")
    one.load([AccountRecord(account=7)], {})
    assert one.snapshot().accounts[7].source == "bridge"
    two = Fleet()
    two.register_source("vps-a")
    two.register_source("vps-b")
    two.load([AccountRecord(account=7)], {})
    assert two.snapshot().accounts[7].source is None  # nobody's until a source lists it
    assert two.claim("vps-b", [7]) == set() and two.holder(7) == "vps-b"
    assert two.claim("vps-a", [7]) == {7}  # held by the first to list it


async def test_sync_once_runs_every_source_and_exits_with_the_worst(tmp_path: Path) -> None:
    """`mt5-agent sync-once` (a real process): one cycle per source, one summary line each, prefixed with
    the source's name; one source unreachable -> exit 2 (the cycle could not run for it)."""
    from tests.agent.processes import agent_env, spawn_agent
    from tests.ports import free_port

    a, pool_a = await _bridge(A_LOGINS)
    try:
        config = _config(tmp_path, str(a.make_url("")).rstrip("/"), f"http://127.0.0.1:{free_port()}")
        proc = await spawn_agent("sync-once", "--config", str(config), env=agent_env())
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        await a.close()
        pool_a.close()  # type: ignore[attr-defined]
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 2, (out, err)
    assert len(lines) == 2, lines
    assert lines[0].startswith("vps-a: sync complete: 3/3 accounts synced"), lines
    assert lines[1].startswith("vps-b: sync skipped: bridge unavailable"), lines


async def test_manual_sync_runs_every_source(tmp_path: Path) -> None:
    """POST /api/admin/sync-from-vps with two sources: one cycle each (both recorded), the seed's fields
    summed; with one of them unreachable the status is the worst of the two."""
    from aiohttp.test_utils import TestClient

    from agent.app import create_app as create_agent_app

    a, pool_a = await _bridge(A_LOGINS)
    b, pool_b = await _bridge(B_LOGINS)
    admin = "admin-token-for-the-manual-sync-0123"
    config = _config(tmp_path, str(a.make_url("")).rstrip("/"), str(b.make_url("")).rstrip("/"))
    agent = build_agent(load_settings(config, admin_token=admin))
    client = TestClient(TestServer(create_agent_app(agent, schedule=False), host="127.0.0.1"))
    await client.start_server()
    try:
        headers = {"Authorization": f"Bearer {admin}"}
        resp = await client.post("/api/admin/sync-from-vps", headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        assert body["status"] == "success" and body["total_accounts"] == len(A_LOGINS) + len(B_LOGINS)
        assert body["accounts_synced"] == len(A_LOGINS) + len(B_LOGINS)
        runs = [s.status.last_run for s in agent.services]
        assert all(r is not None and r.trigger == "manual" for r in runs)
        await b.close()  # vps-b goes away
        resp = await client.post("/api/admin/sync-from-vps", headers=headers)
        body = await resp.json()
        assert body["status"] == "skipped" and body["total_accounts"] == len(A_LOGINS), body
        resp = await client.get("/api/admin/mt5-health", headers=headers)
        health = await resp.json()
        assert resp.status == 200, health
        assert health["sources"] == [
            {
                "name": "vps-a",
                "kind": "bridge",
                "up": True,
                "accounts": len(A_LOGINS),
                "last_result": "success",
            },
            {
                "name": "vps-b",
                "kind": "bridge",
                "up": False,
                "accounts": len(B_LOGINS),
                "last_result": "skipped",
            },
        ]
    finally:
        await client.close()
        await a.close()
        await b.close()
        pool_a.close()  # type: ignore[attr-defined]
        pool_b.close()  # type: ignore[attr-defined]
