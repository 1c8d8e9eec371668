"""`mt5-agent demo` tells its story, observed from outside through the API as a user's frontend would:
the stored fallback, a terminal's account going degraded then critical, the bridge's restart, and the
recovery, each within its scripted window (the story shortened to 30 s; thresholds scale with it)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

import aiohttp

from agent.demo_story import STOPPED_ACCOUNT, STORED_ACCOUNT, StoryTiming
from tests.agent.processes import ROOT, agent_env
from tests.api.test_status_page import _chromium, _chromium_run
from tests.ports import free_port

LENGTH = 30.0
SLACK = 1.0  # the poll here, and a sync's own duration


async def test_the_story_is_observable_through_the_api(tmp_path: Path) -> None:
    _chromium()  # skips loudly (fails under CI=true) without Chromium
    timing = StoryTiming(LENGTH)
    _, t2, t3 = timing.thresholds
    every = timing.schedule_seconds
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "demo.err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "demo",
            "--listen",
            f"127.0.0.1:{port}",
            "--story-seconds",
            f"{LENGTH:g}",
            env=agent_env(),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    lines: list[str] = []

    async def read_stdout() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            lines.append(line.decode().rstrip())

    reader = asyncio.create_task(read_stdout())
    seen: dict[str, float] = {}  # observation -> first story time it was seen
    page: asyncio.Task[str] | None = None  # the status page, rendered by Chromium mid-story

    def first(what: str, at: float) -> None:
        seen.setdefault(what, at)

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            deadline = time.monotonic() + 60 + LENGTH
            while True:
                assert proc.returncode is None, (tmp_path / "demo.err").read_text()[-3000:]
                assert time.monotonic() < deadline, (seen, lines)
                try:
                    async with http.get(f"{base}/api/v1/demo/story") as r:
                        story = (await r.json())["story"]
                    async with http.get(f"{base}/api/v1/accounts") as r:
                        listed = await r.json() if r.status == 200 else {"accounts": []}
                    accounts = {a["account"]: a for a in listed["accounts"]}
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)  # not listening yet
                    continue
                if story is None or not {STORED_ACCOUNT, STOPPED_ACCOUNT} <= accounts.keys():
                    await asyncio.sleep(0.1)
                    continue
                at = story["elapsed_s"]
                if page is None and at >= timing.stopped_at + 0.5:
                    page = asyncio.create_task(_chromium_run(f"{base}/", tmp_path / "chromium", "--dump-dom"))
                stored, stopped = accounts[STORED_ACCOUNT], accounts[STOPPED_ACCOUNT]
                first(f"stored:{stored['data_source']}", at)
                first(f"stored:{stored['freshness']['state']}", at)
                first(f"stopped:{stopped['freshness']['state']}", at)
                if at >= timing.recover_at:
                    if stored["freshness"]["state"] == "fresh" and stored["data_source"] == "VPS_LIVE_MT5":
                        first("stored:recovered", at)
                    if stopped["freshness"]["state"] == "fresh":
                        first("stopped:recovered", at)
                if story["over"] and "stored:recovered" in seen and "stopped:recovered" in seen:
                    break
                await asyncio.sleep(0.2)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 20)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader
    assert proc.returncode == 0, (tmp_path / "demo.err").read_text()[-3000:]
    assert page is not None
    dom = await page
    # the page tells the story too (the step current when Chromium loaded it, or a later one)
    assert '<div id="story">Demo story, ' in dom, dom[:3000]
    assert f"the terminal of account {STOPPED_ACCOUNT} stops" in dom or "restarts" in dom, dom[:3000]

    # the stored fallback from the first sync after the fault
    assert timing.stored_at <= seen["stored:VPS_STORED"] <= timing.stored_at + every + SLACK, seen
    # the stopped terminal's account: degraded, then critical, when its last live data is that old
    last_live = timing.stopped_at - every  # its last live sync came at most one schedule before
    assert last_live + t2 - SLACK <= seen["stopped:degraded"] <= timing.stopped_at + t2 + every + SLACK, seen
    assert last_live + t3 - SLACK <= seen["stopped:critical"] <= timing.stopped_at + t3 + every + SLACK, seen
    assert seen["stored:degraded"] <= timing.stored_at + t2 + every + SLACK, seen
    # both recover at the first syncs after the faults are cleared (the bridge is back by then)
    for who in ("stored", "stopped"):
        assert seen[f"{who}:recovered"] <= timing.recover_at + 2 * every + SLACK, seen
    # and the terminal told the same story, naming the alerts and their runbook
    told = "\n".join(lines)
    assert "MT5AccountDataCritical (" in told and "RUNBOOK.md#" in told, told
    assert "the bridge restarts" in told and "story: over" in told, told
