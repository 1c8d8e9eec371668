"""APScheduler 3.11 on the agent's event loop: the seed's cron schedule or a fixed interval.

The job only starts a cycle task; `SyncService`'s lock guarantees cycles never overlap, a tick that
lands on a running cycle is skipped (coalesced), and `stop()` can wait for or cancel the task, so
shutdown never leaves a half-run cycle behind.

Several sources: one service per source, each tick starts one cycle task per source that is not still
running. Each cycle has its own deadline, health retries and lock, so a slow or dead source delays only
its own cycles (its next tick is skipped while it runs), never the others'.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import Schedule
from agent.domain.tasks import cancel_all
from agent.sync.cycle import SyncService, guarded

log = logging.getLogger("mt5_agent.scheduler")


class SyncScheduler:
    def __init__(
        self,
        service: SyncService | Sequence[SyncService],
        schedule: Schedule,
        *,
        run_at_start: bool = True,
    ) -> None:
        self.services = [service] if isinstance(service, SyncService) else list(service)
        self.service = self.services[0]
        self.schedule = schedule
        self.run_at_start = run_at_start
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    async def _tick(self) -> None:
        for service in self.services:
            if service.running is not None:
                log.info(
                    "scheduled sync of source %s skipped: run %s still running",
                    service.source.name,
                    service.running.run_id,
                    extra={"source": service.source.name},
                )
                continue
            task = asyncio.get_running_loop().create_task(guarded(service.run_cycle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        sched = AsyncIOScheduler(timezone=UTC, event_loop=asyncio.get_running_loop())
        if self.schedule.interval_seconds is not None:
            trigger: CronTrigger | IntervalTrigger = IntervalTrigger(
                seconds=self.schedule.interval_seconds, timezone=UTC
            )
        else:
            trigger = CronTrigger(minute=self.schedule.cron_minute, timezone=UTC)
        sched.add_job(
            self._tick,
            trigger,
            id="mt5_sync",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=30,
            replace_existing=True,
        )
        if self.run_at_start:
            # This first cycle also opens the store and loads state: it must run however late the loop
            # gets to it (a date job's default grace of 1 s would drop it on a busy start).
            sched.add_job(
                self._tick,
                "date",
                run_date=datetime.now(UTC),
                id="mt5_sync_startup",
                misfire_grace_time=None,
            )
        sched.start()
        self._scheduler = sched
        log.info("sync scheduled %s", self.schedule)

    async def stop(self, grace: float = 5.0) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        if pending:
            await cancel_all(list(pending))
            log.warning("cancelled a sync cycle still running at shutdown")
