"""End-to-end fixtures: `webhook` (an Alertmanager webhook receiver in the test's event loop) and
`e2e_stack` (bridge, agent, Prometheus, Alertmanager as subprocesses on loopback, see stack.py).

Every subprocess is stopped in teardown whatever happened; when the test failed, each process' log
(stderr and stdout) is printed in the teardown section of the report.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.stack import LOG_TAIL_LINES, Stack, Webhook

_PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item so fixtures can tell in teardown whether the test failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    item.stash.setdefault(_PHASE_REPORTS, {})[report.when] = report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_PHASE_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture
async def webhook() -> AsyncIterator[Webhook]:
    """A webhook receiver on 127.0.0.1 (in the test's event loop) standing in for paging/ticketing."""
    tokens = {"paging": "e2e-paging-token", "tickets": "e2e-tickets-token"}
    hook = Webhook(url="", tokens=tokens)

    async def receive(request: web.Request) -> web.Response:
        hook.received.append(
            {
                "receiver": request.match_info["receiver"],
                "authorization": request.headers.get("Authorization"),
                "payload": await request.json(),
                "at": time.monotonic(),
            }
        )
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    hook.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield hook
    finally:
        await runner.cleanup()


@pytest.fixture
async def e2e_stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """A Stack whose processes are always stopped, with their logs printed when the test failed."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        stack = Stack(tmp_path, session)
        try:
            yield stack
        finally:
            await stack.stop_all()
            if _failed(request):
                for proc in stack.procs.values():
                    print(
                        f"\n===== {proc.name} (exit {proc.process and proc.process.returncode}) "
                        f"log {proc.log}, last {LOG_TAIL_LINES} lines ====="
                    )
                    print(proc.tail())
                print(f"\n===== e2e tmp dir: {tmp_path} =====")
                print(json.dumps({n: str(p.log) for n, p in stack.procs.items()}, indent=2))
