"""Source reachability on its own short period, independent of the sync schedule.

With the seed's 5-minute schedule, `mt5_bridge_up` would otherwise change only at the next sync attempt,
and every account's freshness alert would fire before MT5BridgeDown could inhibit them. The prober calls
the source's health once per `interval` (no retries, a timeout no longer than the interval) and sets
`bridge_up`, `last_health` and `last_probe_at` in the fleet's status; a cycle sets the first two as
well, with the same meaning. One loop task: probes never overlap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from agent.domain.tasks import cancel_and_wait
from agent.sources.base import Source, SourceError
from agent.sync.fleet import Fleet

log = logging.getLogger("mt5_agent.probe")


class SourceProber:
    def __init__(
        self,
        source: Source,
        fleet: Fleet,
        *,
        interval: float,
        timeout: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.fleet = fleet
        self.interval = interval
        self.timeout = min(timeout, interval)
        self.clock = clock
        self.probes = 0  # completed probes (tests wait on it)
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name=f"mt5-probe-{self.source.name}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)

    async def probe_once(self) -> bool:
        """One health call; True when the source answered and reports itself usable."""
        error: str | None = None
        health = None
        try:
            async with asyncio.timeout(self.timeout):
                health = await self.source.health()
        except SourceError as exc:
            error = exc.message
        except TimeoutError:
            error = f"health: no answer within {self.timeout:g}s"
        up = health is not None and health.usable
        fleet, name = self.fleet, self.source.name
        if health is not None:
            fleet.update_status(name, last_health=health)
            if not up:
                error = f"bridge reports {health.status}" + ("" if health.available else ", MT5 unavailable")
        was = fleet.source_status(name).bridge_up
        fleet.update_status(name, bridge_up=up, last_probe_at=self.clock())
        self.probes += 1
        if up and was is False:
            log.info("source %s reachable again (probe)", name, extra={"source": name})
        elif not up and was is not False:
            log.warning(
                "source %s down (probe): %s", name, error, extra={"reason": "bridge_probe", "source": name}
            )
        return up

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a probe must never end the loop
                log.exception("bridge probe failed")
            next_at += self.interval
            now = loop.time()
            if next_at < now:  # a slow probe: keep the period, skip the missed ticks
                next_at = now + self.interval - (now - next_at) % self.interval
            await asyncio.sleep(next_at - now)
