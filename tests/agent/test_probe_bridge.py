"""Finding 9 (agent side): bridge reachability is probed on its own short period, not the sync schedule.

A real aiohttp bridge on loopback is stopped and restarted while the agent runs an hourly schedule:
`bridge_up` (and `mt5_bridge_up`) follows within about one probe interval, and no sync cycle runs.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.app import Agent, build_agent, create_app
from agent.config import ENV_PREFIX, load_settings
from agent.sources.base import SourceHealth
from agent.sources.bridge import BridgeClient, BridgeSource
from agent.sync.fleet import Fleet, SyncStatus
from agent.sync.probe import SourceProber
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 0.2


@pytest.fixture(autouse=True)
def _no_agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


class Bridge:
    """The two endpoints a cycle with no accounts needs; stoppable and restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = "healthy"
        self.health_delay = 0.0
        self.requests: list[str] = []
        self._runner: web.AppRunner | None = None

    async def _health(self, request: web.Request) -> web.Response:
        self.requests.append("health")
        if self.health_delay:
            await asyncio.sleep(self.health_delay)
        return web.json_response({"status": self.status, "mt5": {"available": self.status != "unhealthy"}})

    async def _summary(self, request: web.Request) -> web.Response:
        self.requests.append("summary")
        return web.json_response({"accounts": []})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/mt5/bridge/health", self._health)
        app.router.add_get("/api/mt5/accounts/summary", self._summary)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge()
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `pred()` held (checked every 10 ms); fails after `timeout`."""
    started = time.monotonic()
    while not pred():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def _bridge_up_metric(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(f"{base}/metrics") as r:
        text = await r.text()
    m = re.search(r'^mt5_bridge_up\{source="bridge"\} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def _runs(status: SyncStatus) -> int:
    return sum(status.runs.values())


async def test_probe_follows_the_bridge_down_and_back_without_any_cycle(
    bridge: Bridge, tmp_path: Path
) -> None:
    settings = load_settings(
        bridge_url=bridge.url,
        store_url=f"sqlite:///{tmp_path / 'a.db'}",
        schedule="1h",
        probe_interval=INTERVAL,
        health_retries=1,
    )
    agent: Agent = build_agent(settings)
    server = TestServer(create_app(agent), host="127.0.0.1", port=0)
    await server.start_server()
    fleet = agent.fleet
    try:
        base = f"http://127.0.0.1:{server.port}"
        # The start-up cycle runs once; after it, only probes may reach the bridge.
        await _until(
            lambda: fleet.status.last_run is not None and fleet.status.bridge_up is True, 10, "first cycle"
        )
        runs, summaries = _runs(fleet.status), bridge.requests.count("summary")
        assert agent.prober is not None and agent.prober.running

        async with aiohttp.ClientSession() as s:
            assert await _bridge_up_metric(s, base) == 1
            await bridge.stop()
            took = await _until(lambda: fleet.status.bridge_up is False, 5, "bridge_up False after stop")
            assert took < INTERVAL + 1.0
            assert await _bridge_up_metric(s, base) == 0
            assert fleet.status.last_probe_at is not None

            await bridge.start()
            took = await _until(lambda: fleet.status.bridge_up is True, 5, "bridge_up True after restart")
            assert took < INTERVAL + 1.0
            assert await _bridge_up_metric(s, base) == 1

            # A bridge that answers but says it is unhealthy counts as down.
            bridge.status = "unhealthy"
            await _until(lambda: fleet.status.bridge_up is False, 5, "bridge_up False when unhealthy")
            health = fleet.status.last_health
            assert health is not None and health.status == "unhealthy"
            assert await _bridge_up_metric(s, base) == 0

        assert _runs(fleet.status) == runs  # no cycle ran: the probe alone moved bridge_up
        assert bridge.requests.count("summary") == summaries
        assert bridge.requests.count("health") >= 4
    finally:
        await server.close()
    assert agent.prober is not None and not agent.prober.running
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "mt5-bridge-probe"]


class _CountingBridge(BridgeClient):
    """Counts health calls in flight at once (a probe overlapping the previous one would show 2)."""

    active = 0
    max_active = 0
    finished = 0

    async def health(self) -> SourceHealth:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            return await super().health()
        finally:
            self.active -= 1
            self.finished += 1


async def test_probe_never_overlaps_times_out_within_its_period_and_stops_cleanly(bridge: Bridge) -> None:
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    bridge.health_delay = 30.0  # a hung bridge: every probe must give up within its period
    client = _CountingBridge(bridge.url, timeout=30.0)
    fleet = Fleet()
    prober = SourceProber(BridgeSource(client), fleet, interval=INTERVAL, timeout=30.0)
    assert prober.timeout == INTERVAL  # never longer than the period
    try:
        started = time.monotonic()
        prober.start()
        prober.start()  # idempotent: still one loop
        await _until(lambda: prober.probes >= 5, 10, "five probes")
        elapsed = time.monotonic() - started
        assert fleet.status.bridge_up is False
        assert client.max_active == 1
        assert prober.probes <= elapsed / INTERVAL + 1  # one probe per period, no burst
        await asyncio.sleep(INTERVAL / 2)  # stop while a probe is in flight
        stop_started = time.monotonic()
        await prober.stop()
        assert time.monotonic() - stop_started < 1.0
        assert not prober.running and client.active == 0
        await prober.stop()  # stopping twice is harmless
    finally:
        await client.close()
    gc.collect()
    await asyncio.sleep(0)
    assert not loop_errors, loop_errors


async def test_demo_probes_the_bridge_between_cycles() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MT5_AGENT_", "OTEL_"))}
    env["MT5_AGENT_PROBE_INTERVAL"] = str(INTERVAL)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "demo",
        "--listen",
        f"127.0.0.1:{port}",
        "--schedule",
        "1h",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    health_re = re.compile(
        r'^mt5_bridge_request_duration_seconds_count\{endpoint="health",source="bridge"\} (\S+)$', re.M
    )
    runs_re = re.compile(r"^mt5_sync_runs_total\{result=\"\w+\"\} (\S+)$", re.M)
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert first.startswith("mt5-agent demo:")
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while True:
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                m = health_re.search(text)
                runs = sum(float(v) for v in runs_re.findall(text))
                if m and float(m.group(1)) >= 6 and runs == 2:
                    break
                assert time.monotonic() < deadline, text
                await asyncio.sleep(0.1)
        assert runs == 2  # one start-up cycle per bridge (the demo runs two); every other health call a probe
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
