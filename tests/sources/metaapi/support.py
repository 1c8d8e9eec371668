"""Shared set-up of the MetaAPI source tests: a token file, small real-time bounds, condition waits."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.sources.metaapi import Bounds, MetaApiSource, load_settings
from tests.sources.metaapi.fake_sdk import FakeCloud

# Small bounds so the watchdogs act within a test; the check interval is short so measured times are
# close to the bounds.
FAST = Bounds(
    sync_timeout=0.3,
    silence=0.3,
    check_interval=0.02,
    backoff_base=0.05,
    backoff_cap=0.4,
    max_retry_after=5.0,
    close_timeout=0.5,
)
SLACK = 0.25  # scheduling latency allowed on a shared 2-core machine
# For tests of what is read, not of the watchdogs: a loaded CI machine may hold the fake's 0.05 s heartbeat
# past FAST's 0.3 s silence, and a connection judged silent would fail a read these tests do not expect.
CALM = dataclasses.replace(FAST, sync_timeout=10.0, silence=10.0)


def token_file(tmp_path: Path, token: str = "tok-0123456789abcdef") -> Path:
    path = tmp_path / "metaapi_token"
    path.write_text(token + "\n")
    return path


def make_source(
    cloud: FakeCloud,
    tmp_path: Path,
    accounts: dict[str, str],
    *,
    bounds: Bounds = FAST,
    token: str = "tok-0123456789abcdef",
    **kw: Any,
) -> MetaApiSource:
    settings = load_settings(token_file(tmp_path, token), accounts, bounds)
    return MetaApiSource(settings, factory=cloud.factory, **kw)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> float:
    """Wait for `cond` (polled every 5 ms); the monotonic time it became true. Fails past `timeout`."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not true within {timeout}s")
        await asyncio.sleep(0.005)
    return time.monotonic()
