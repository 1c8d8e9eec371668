"""End-to-end fixture `e2e_stack`: bridge, agent, Prometheus, Alertmanager and the webhook receiver as
subprocesses on loopback (see stack.py).

Every subprocess is stopped in teardown whatever happened; when the test failed, each process' log
(stderr and stdout) is printed in the teardown section of the report.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.stack import LOG_TAIL_LINES, Stack

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
