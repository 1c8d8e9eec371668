"""The demo's story: a scripted scenario that shows a new user what freshness states, alerts and runbooks
are for, in about two minutes, while positions keep trading.

One account loses live data (the bridge falls back to stored values, which do not reset freshness), one
terminal stops (its account goes degraded, then critical), the bridge restarts, and everything recovers.
Thresholds are scaled to the story's length so each state is reached within it; every step says what
happens, what the agent will show, and which alert would fire, with its runbook link.

The story knows nothing of the bridge: it acts through `StoryControls` (the demo wires the simulated
pool's faults and its server restart), so it can be tested with any controls.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.telemetry.alerting import RUNBOOK_URL, runbook_link

STORED_ACCOUNT = 886602  # loses live data: the bridge serves its stored values (VPS_STORED)
STOPPED_ACCOUNT = 886066  # its terminal stops
DEFAULT_LENGTH = 120.0  # seconds
MIN_LENGTH = 24.0
RESTART_DOWN_FRACTION = 0.04  # of the length: the bridge's restart (a few seconds)


class StoryControls(Protocol):
    def set_fault(self, login: int, fault: str | None) -> None: ...

    async def restart_bridge(self, down_seconds: float) -> None: ...


@dataclass(frozen=True)
class StoryTiming:
    """The story's clock, all in seconds from its start, derived from its length."""

    length: float = DEFAULT_LENGTH

    def __post_init__(self) -> None:
        if not self.length >= MIN_LENGTH:
            raise ValueError(f"the story needs at least {MIN_LENGTH:g} seconds, got {self.length:g}")

    @property
    def thresholds(self) -> tuple[float, float, float]:
        """fresh < t1 <= acceptable < t2 <= degraded < t3 <= critical."""
        unit = self.length / 6
        return (unit, 2 * unit, 3 * unit)

    @property
    def schedule_seconds(self) -> float:
        return max(1.0, self.length / 24)

    @property
    def freshness(self) -> str:
        return ",".join(f"{t:g}" for t in self.thresholds)

    @property
    def stored_at(self) -> float:
        return 0.10 * self.length

    @property
    def stopped_at(self) -> float:
        return 0.20 * self.length

    @property
    def restart_at(self) -> float:
        return 0.75 * self.length

    @property
    def recover_at(self) -> float:
        return 0.85 * self.length

    @property
    def restart_down(self) -> float:
        return max(1.0, RESTART_DOWN_FRACTION * self.length)


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the start
    say: str
    act: Callable[[StoryControls], Awaitable[None] | None] | None = None


def _alert(name: str, runbook_url: str) -> str:
    return f"{name} ({runbook_link(runbook_url, name)})"


def script(timing: StoryTiming, runbook_url: str) -> list[Step]:
    t1, t2, t3 = timing.thresholds
    a, b = STORED_ACCOUNT, STOPPED_ACCOUNT

    def fault(login: int, name: str | None) -> Callable[[StoryControls], None]:
        return lambda c: c.set_fault(login, name)

    def clear(c: StoryControls) -> None:
        c.set_fault(a, None)
        c.set_fault(b, None)

    return [
        Step(
            0.0,
            f"story: every account is live and fresh (freshness scaled to the story: acceptable after "
            f"{t1:g} s without live data, degraded after {t2:g} s, critical after {t3:g} s)",
        ),
        Step(
            timing.stored_at,
            f"story: account {a} loses live data; the bridge serves its stored values (VPS_STORED), "
            f"which never reset freshness: acceptable in {t1:g} s, degraded in {t2:g} s -> "
            f"{_alert('MT5AccountDataDegraded', runbook_url)}",
            fault(a, "no_live_data"),
        ),
        Step(
            timing.stopped_at,
            f"story: the terminal of account {b} stops; every sync of it fails -> "
            f"{_alert('MT5AccountSyncFailing', runbook_url)}; degraded in {t2:g} s, critical in {t3:g} s -> "
            f"{_alert('MT5AccountDataCritical', runbook_url)}",
            fault(b, "disconnected"),
        ),
        Step(
            timing.restart_at,
            f"story: the bridge restarts ({timing.restart_down:g} s down): the cycle in between fails "
            f"(burns the {_alert('MT5SyncSuccessRateLow', runbook_url)} budget); far below "
            f"{_alert('MT5BridgeDown', runbook_url)}'s 2 minutes, so no page",
            lambda c: c.restart_bridge(timing.restart_down),
        ),
        Step(
            timing.recover_at,
            f"story: account {a} gets live data again and the terminal of account {b} is back: both fresh "
            "at the next sync, their alerts resolve",
            clear,
        ),
        Step(timing.length, "story: over; the desk keeps trading calmly (run with --calm to skip the story)"),
    ]


@dataclass
class Story:
    """Runs the script once; `current` is the last step told (for a page or an API)."""

    controls: StoryControls
    timing: StoryTiming = field(default_factory=StoryTiming)
    runbook_url: str = RUNBOOK_URL
    say: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ready: Callable[[], bool] = lambda: True  # the story begins once this holds (the first sync done)
    current: str = ""
    started: float | None = None
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="demo-story")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> dict[str, object] | None:
        """The current step for the API (None before the story starts)."""
        if self.started is None:
            return None
        elapsed = self.clock() - self.started
        return {
            "step": self.current,
            "elapsed_s": round(min(elapsed, self.timing.length), 1),
            "length_s": self.timing.length,
            "over": elapsed >= self.timing.length,
        }

    async def run(self) -> None:
        while not self.ready():
            await self.sleep(0.1)
        self.started = self.clock()
        for step in script(self.timing, self.runbook_url):
            delay = step.at - (self.clock() - self.started)
            if delay > 0:
                await self.sleep(delay)
            self.current = step.say
            self.say(f"[{self.clock() - self.started:5.1f} s] {step.say}")
            if step.act is not None:
                result = step.act(self.controls)
                if result is not None:
                    await result
