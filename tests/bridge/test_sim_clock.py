"""The simulated desk's clock: shifted and accelerated for demos and long tests, and a restarted bridge
given the same start and anchor continues the same run (the desk is a function of seed and clock)."""

from __future__ import annotations

import time
from datetime import datetime

import aiohttp
import pytest

from bridge.sim_clock import SimClock, parse_instant
from bridge.simulated import SimulatedTerminal, demo_accounts
from tests.bridge.test_bridge_cli import _spawn, _stop, _wait_for_health

ACCOUNT = 886066


def test_parse_instant_forms() -> None:
    now = 1_800_000_000.0
    assert parse_instant("-6h", now=now) == now - 6 * 3600
    assert parse_instant("-90m", now=now) == now - 5400
    assert parse_instant("+30s", now=now) == now + 30
    assert parse_instant("-2d", now=now) == now - 2 * 86400
    assert parse_instant("1700000000.5") == 1_700_000_000.5
    assert parse_instant("2026-12-01T00:00:00Z") == parse_instant("2026-12-01T00:00:00")
    assert parse_instant("2026-12-01T02:00:00+02:00") == parse_instant("2026-12-01T00:00:00Z")
    for bad in ("", "yesterday", "-6x", "-h"):
        with pytest.raises(ValueError):
            parse_instant(bad)


def test_clock_maps_wall_to_simulated_time() -> None:
    clock = SimClock(start=1000.0, anchor=5000.0, scale=60.0)
    assert clock.at(5000.0) == 1000.0
    assert clock.at(5001.0) == 1060.0
    assert clock.wall_for(clock.at(5123.25)) == pytest.approx(5123.25)
    with pytest.raises(ValueError):
        SimClock(start=0.0, anchor=0.0, scale=0.0)
    now = time.time()
    behind = SimClock(start=now - 3600, anchor=now, scale=61.0)
    assert behind.overtakes_wall_at() == pytest.approx(now + 60, abs=0.01)
    assert behind.ahead_now() < 0
    assert SimClock(start=now - 10, anchor=now, scale=1.0).overtakes_wall_at() is None


def test_two_desks_built_at_different_times_agree() -> None:
    """What a restart relies on: the desk's history does not depend on when the terminal was built."""
    t0 = time.time() - 6 * 3600
    first = SimulatedTerminal([e for e in demo_accounts() if e.login == ACCOUNT], clock=lambda: t0)
    later = SimulatedTerminal([e for e in demo_accounts() if e.login == ACCOUNT], clock=lambda: t0 + 3600)
    since, until = int((t0 - 1800) * 1000), int((t0 + 1800) * 1000)
    assert first.ground_truth(ACCOUNT, since, until) == later.ground_truth(ACCOUNT, since, until)
    assert first.ground_truth(ACCOUNT, since, until), "an hour of the desk with no change proves nothing"


async def test_accelerated_bridge_runs_at_its_scale_and_continues_after_a_restart(
    unused_tcp_port: int,
) -> None:
    anchor = time.time()
    clock = SimClock(start=anchor - 6 * 3600, anchor=anchor, scale=60.0)
    args = [
        "--simulate",
        "--port",
        str(unused_tcp_port),
        f"--clock-start={clock.start}",
        f"--clock-anchor={clock.anchor}",
        "--time-scale",
        "60",
    ]
    base = f"http://127.0.0.1:{unused_tcp_port}"
    url = f"{base}/api/mt5/account/{ACCOUNT}/positions"

    async def read(s: aiohttp.ClientSession) -> tuple[float, float, float, set[int]]:
        before = time.time()
        async with s.get(url) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        after = time.time()
        at = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
        return before, at, after, {p["identifier"] for p in body["positions"]}

    for run in range(2):  # the second run is a restart on the same start and anchor
        proc = _spawn(*args)
        try:
            async with aiohttp.ClientSession() as s:
                await _wait_for_health(s, base, proc)
                before, at, after, ids = await read(s)
                # the terminal's read time lies on the mapped clock (ms resolution, plus read time)
                assert clock.at(before) - 0.01 <= at <= clock.at(after) + 0.01, (run, before, at, after)
                # the same instant of the same desk, computed here: the same open positions
                term = SimulatedTerminal(
                    [e for e in demo_accounts() if e.login == ACCOUNT], clock=lambda at=at: at
                )
                assert term.initialize() and term.login(ACCOUNT, password=f"demo-{ACCOUNT}")
                expected = {p.identifier for p in term.positions_get() or ()}
                assert ids == expected, (run, ids, expected)
        finally:
            _, _, err = _stop(proc)
        assert "x60" in err, err
