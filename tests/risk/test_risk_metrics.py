"""The risk metrics end to end: our simulated bridge on a clock the test moves, the agent as `mt5-agent run`
builds it (sync every second, positions poller at 0.25 s) on a real port, /metrics scraped over HTTP.

At every step the desk's clock is frozen, so the bridge's own positions and equity (read by the test with
its own client) are the ground truth: largest open loss, net lots per symbol, equity peaks and drawdowns
are recomputed here from them and compared with what the agent exports, and the broker's margin levels
the terminal reports are exported as it reports them; the output passes
`promtool check metrics`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from agent.app import build_agent, create_app
from agent.config import load_settings
from agent.domain.trades import PositionsSnapshot, PositionType
from agent.sources.bridge import BridgeClient
from agent.telemetry import catalog as m
from bridge.api import create_app as create_bridge_app
from bridge.simulated import SERVER, broker_levels, demo_accounts, simulated_pool
from tests.ports import free_port
from tests.tools import require_tool

STEPS = 6
STEP_S = 1800.0  # simulated seconds between two steps: trades open and close, equity moves


def expected_open(snap: PositionsSnapshot) -> tuple[float, dict[str, float]]:
    worst = 0.0
    net: dict[str, float] = defaultdict(float)
    for p in snap.positions:
        worst = max(worst, -(p.profit + p.swap))
        net[p.symbol] += p.volume if p.type is PositionType.BUY else -p.volume
    return worst, {s: round(v, 8) for s, v in net.items()}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, family: m.Family, **labels: str) -> float | None:
    return samples.get((family.series, tuple(sorted(labels.items()))))


def matches(
    samples: Samples,
    logins: list[int],
    truth: dict[int, tuple[float, dict[str, float]]],
    equity: dict[int, float | None],
) -> bool:
    """The scrape shows the desk as the test read it: equity, largest open loss, net lots per symbol."""
    for a in logins:
        acc = str(a)
        if value(samples, m.ACCOUNT_EQUITY, account=acc) != equity[a]:
            return False
        if value(samples, m.ACCOUNT_LARGEST_OPEN_LOSS, account=acc) != pytest.approx(truth[a][0]):
            return False
        exported = {
            dict(k[1])[m.SYMBOL]: v
            for k, v in samples.items()
            if k[0] == m.ACCOUNT_NET_EXPOSURE.series and dict(k[1])[m.ACCOUNT] == acc
        }
        if exported != pytest.approx(truth[a][1]):
            return False
    return True


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
async def desk_and_agent(tmp_path: Path) -> AsyncIterator[tuple[list[float], BridgeClient, str]]:
    now = [time.time() - 6 * 3600]  # behind the wall clock: the agent refuses times from its future
    bridge = TestServer(create_bridge_app(simulated_pool(clock=lambda: now[0], seed=7)), host="127.0.0.1")
    await bridge.start_server()
    url = str(bridge.make_url("")).rstrip("/")
    settings = load_settings(
        bridge_url=url,
        store_url=f"sqlite:///{tmp_path / 'agent.db'}",
        schedule="1s",
        positions_interval="0.25",
        health_backoff=0.01,
    )
    runner = web.AppRunner(create_app(build_agent(settings)), handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = BridgeClient(url, timeout=5.0)
    try:
        yield now, client, f"http://127.0.0.1:{port}"
    finally:
        await client.close()
        await runner.cleanup()
        await bridge.close()


async def test_risk_metrics_follow_the_desk(
    desk_and_agent: tuple[list[float], BridgeClient, str], tmp_path: Path
) -> None:
    now, client, agent_url = desk_and_agent
    logins = [e.login for e in demo_accounts()]
    seen: dict[int, list[tuple[datetime, float]]] = defaultdict(list)  # equity samples the agent had
    drawdown_seen = False
    text = ""
    async with aiohttp.ClientSession() as http:
        for step in range(STEPS):
            if step:
                now[0] += STEP_S
            truth = {a: expected_open(await client.positions(a)) for a in logins}
            infos = {a: await client.account_info(a) for a in logins}
            equity = {a: info.values.equity for a, info in infos.items()}

            deadline = time.monotonic() + 20.0
            while True:
                async with http.get(f"{agent_url}/metrics") as resp:
                    assert resp.status == 200
                    text = await resp.text()
                samples = parse(text)
                if matches(samples, logins, truth, equity):
                    break
                assert time.monotonic() < deadline, f"step {step}: risk metrics never matched the desk"
                await asyncio.sleep(0.1)
            for a in logins:
                acc = str(a)
                # the broker's levels (issue 14): as the terminal reports them, the simulated broker's
                levels = infos[a].broker_levels
                assert levels is not None and levels.mode == "percent", a
                assert (levels.margin_call, levels.stop_out) == broker_levels(SERVER) == (100.0, 50.0)
                assert value(samples, m.ACCOUNT_MARGIN_CALL_LEVEL, account=acc) == 1.0, a
                assert value(samples, m.ACCOUNT_STOP_OUT_LEVEL, account=acc) == 0.5, a
                last = value(samples, m.ACCOUNT_LAST_SYNC, account=acc)
                assert last is not None and equity[a] is not None
                seen[a].append((datetime.fromtimestamp(last, UTC), equity[a]))
                peak = max(e for _, e in seen[a])
                day = seen[a][-1][0].date()
                day_peak = max(e for t, e in seen[a] if t.date() == day)
                for period, top in (("tracking", peak), ("day", day_peak)):
                    exported_peak = value(samples, m.ACCOUNT_EQUITY_PEAK, account=acc, period=period)
                    assert exported_peak == top, (a, period)
                    # the drawdown is computed in PromQL (1 - equity / peak) from these two series
                    exported_equity = value(samples, m.ACCOUNT_EQUITY, account=acc)
                    assert exported_equity == equity[a], a
                    assert not any(k[0] == "mt5_account_equity_drawdown_ratio" for k in samples)
                    if top > 0:
                        drawdown_seen = drawdown_seen or exported_equity < top
    assert drawdown_seen, "no drawdown in the whole run: the check proved little"
    assert value(samples, m.RISK_TRACKING_START) is not None
    result = await asyncio.to_thread(promtool_check, text)
    assert result.returncode == 0, result.stdout + result.stderr
