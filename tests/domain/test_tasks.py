"""`cancel_and_wait`: a task that swallows a cancel (as Python 3.11's wait_for, or a client library that
turns it into its own error, can) is cancelled again until it ends; a long-running part built on it stops
where a single cancel would have waited for ever."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from agent.domain.accounts import Reason
from agent.domain.tasks import cancel_all, cancel_and_wait
from agent.sources.base import SourceError, SourceHealth
from agent.sources.memory import MemorySource
from agent.sync.fleet import Fleet
from agent.sync.probe import SourceProber


def swallowing(times: int, cancels: list[int]) -> asyncio.Task[str]:
    """A loop that treats its first `times` cancels as a failed call and goes on."""

    async def run() -> str:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels.append(1)
                if len(cancels) > times:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]

    return asyncio.get_running_loop().create_task(run())


async def test_a_task_that_swallows_cancels_is_cancelled_until_it_ends() -> None:
    cancels: list[int] = []
    task = swallowing(2, cancels)
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await cancel_and_wait(task, every=0.05)
    assert task.cancelled() and len(cancels) == 3


async def test_a_single_cancel_would_have_left_it_running() -> None:
    """The premise: the old way (one cancel, then await) does not end such a task."""
    cancels: list[int] = []
    task = swallowing(1, cancels)
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done and cancels == [1]
    await cancel_and_wait(task, every=0.05)
    assert task.done()


async def test_an_error_the_task_ends_with_is_raised_and_cancel_all_drops_it() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ValueError("closing failed") from None

    task = asyncio.get_running_loop().create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="closing failed"):
        await cancel_and_wait(task)
    tasks = [asyncio.get_running_loop().create_task(fails_on_cancel()), swallowing(1, [])]
    await asyncio.sleep(0)
    async with asyncio.timeout(10):
        await cancel_all(tasks, every=0.05)
    assert all(t.done() for t in tasks)


class CancelEatingSource(MemorySource):
    """Its health call turns a cancel into its own error, as a client library's timeout can."""

    async def health(self) -> SourceHealth:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            raise SourceError(Reason.CONNECTION, "health: connection closed") from None
        raise AssertionError("unreachable")


async def test_the_prober_stops_when_its_source_eats_the_cancel() -> None:
    prober = SourceProber(
        CancelEatingSource(), Fleet(), interval=3600, timeout=3600, clock=lambda: datetime.now(UTC)
    )
    prober.start()
    await asyncio.sleep(0.05)  # in its health call
    assert prober.running
    # (not under asyncio.timeout: a stop that suppresses CancelledError would eat that cancel too)
    stopping = asyncio.get_running_loop().create_task(prober.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "the prober's stop is still waiting for its task"
    assert not prober.running
