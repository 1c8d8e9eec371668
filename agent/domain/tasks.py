"""How every long-running part stops its background task: cancelled until it has ended.

One cancel is not always enough. A cancel that lands as an inner call completes can be swallowed
(Python 3.11's `asyncio.wait_for`, a client library's own timeout turning it into its error), and a loop
that catches that error as a failed read simply runs on: a single `task.cancel(); await task` then waits
for ever, and the agent never stops."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

RECANCEL_EVERY_SECONDS = 1.0


async def cancel_and_wait(task: asyncio.Task[Any], every: float = RECANCEL_EVERY_SECONDS) -> None:
    """Cancel `task`, again every `every` seconds while it runs on, then wait for its end. Its
    CancelledError is expected and dropped; any other error it ended with is raised."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_all(tasks: list[asyncio.Task[Any]], every: float = RECANCEL_EVERY_SECONDS) -> None:
    """`cancel_and_wait` for each of `tasks` at once; their errors are dropped (a stop must finish)."""
    await asyncio.gather(*(cancel_and_wait(t, every) for t in tasks), return_exceptions=True)
