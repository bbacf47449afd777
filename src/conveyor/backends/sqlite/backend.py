"""The embedded SQLite job store, part two: reading and managing jobs and queues.

The module docstring of ``transitions.py`` describes the store as a whole: the
URL, the one writer thread, and how idle workers wait.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from conveyor.backends.sqlite import admin, limits, reading, schedules
from conveyor.backends.sqlite.transitions import SQLiteTransitions
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.cron import Schedule
from conveyor.job import ChildOutcome, Job, JobState, LogEntry
from conveyor.limits import Limits, Rate

__all__ = ["SQLiteBackend"]


class SQLiteBackend(SQLiteTransitions):
    # -- inspection ------------------------------------------------------------

    async def get_job(self, *, job_id: str) -> Job | None:
        return await self.read(reading.get_job, job_id=job_id)

    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        return await self.read(reading.get_logs, job_id=job_id)

    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        return await self.read(
            reading.list_jobs, queue=queue, state=state, offset=offset, limit=limit
        )

    async def queues(self) -> list[QueueInfo]:
        return await self.read(reading.queues)

    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        return await self.read(reading.child_outcomes, parent_id=parent_id)

    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        since = self.clock.now_ms() - seen_within_ms
        return await self.read(reading.workers, seen_since_ms=since)

    # -- administration ----------------------------------------------------------

    async def set_paused(self, *, queue: str, paused: bool) -> None:
        await self.write(admin.set_paused, queue=queue, paused=paused)
        self.wakeup.set()

    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        await self.write(
            limits.set_limits, queue=queue, group=group, max_active=max_active, rate=rate
        )
        self.wakeup.set()

    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        return await self.read(limits.get_limits, queue=queue)

    async def retry_jobs(self, *, job_ids: Sequence[str] | None, queue: str | None) -> int:
        return await admin.retry_jobs(self, job_ids=job_ids, queue=queue)

    async def cancel(self, *, job_id: str) -> bool:
        return await self.write(admin.cancel, self.clock, job_id=job_id)

    async def remove(self, *, job_id: str) -> bool:
        return await self.write(admin.remove, self.clock, job_id=job_id)

    async def promote(self, *, job_id: str) -> bool:
        promoted = await self.write(admin.promote, self.clock, job_id=job_id)
        self.wakeup.set()
        return promoted

    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        return await self.write(
            admin.clean,
            self.clock,
            queue=queue,
            state=state,
            older_than_ms=older_than_ms,
            keep=keep,
            limit=limit,
        )

    # -- schedules ---------------------------------------------------------------

    async def save_schedule(self, *, schedule: Schedule) -> None:
        await self.write(schedules.save_schedule, schedule=schedule)

    async def remove_schedule(self, *, schedule_id: str) -> bool:
        return await self.write(schedules.remove_schedule, schedule_id=schedule_id)

    async def schedules(self) -> list[tuple[Schedule, int | None]]:
        return await self.read(schedules.schedules)

    async def mark_tick(self, *, schedule_id: str, tick_ms: int) -> None:
        await self.write(schedules.mark_tick, schedule_id=schedule_id, tick_ms=tick_ms)

    async def now_ms(self) -> int:
        return self.clock.now_ms()
