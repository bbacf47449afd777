"""What every worker does besides running jobs, each on its own interval.

- Stall detection (``reclaim_interval_s``), in two phases: note the expired
  leases, and at the next check reclaim only those still expired with the
  same expiry (nobody renewed them). After the store was unreachable every
  lease looks expired: nothing is reclaimed until live workers have had a
  renewal interval to renew theirs.
- The heartbeat (``heartbeat_s``): the worker's record, read by
  ``conveyor workers`` and ``app.workers()``.
- Due schedule ticks (``SCHEDULE_CHECK_S``), flow outcomes nobody applied yet
  (``OUTCOME_CHECK_S``), trims to retention (``trimming.TICK_S``) and of
  events past their max age (``EVENT_TRIM_S``).

A chore that fails is logged and runs again at its next interval; it never
stops the worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.managing import WorkerCommand
from conveyor.backends.values import WorkerInfo
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.job import JobState, Retention
from conveyor.middleware import Middleware, call_hooks
from conveyor.settings import WorkerSettings
from conveyor.task import Task
from conveyor.worker.health import StoreHealth
from conveyor.worker.trimming import TICK_S, Trimmer

__all__ = ["Chores", "retentions"]

log = logging.getLogger("conveyor.worker")

SCHEDULE_CHECK_S = 1.0  # how often due schedule ticks are looked for
OUTCOME_CHECK_S = 1.0  # how often outcomes owed to flow parents are looked for
OUTCOME_BATCH = 100
EVENT_TRIM_S = 10.0  # how often events older than their max age are dropped
EXPIRED_BATCH = 1000  # expired leases looked at per check

Chore = Callable[[], Awaitable[bool | None]]


def retentions(tasks: Iterable[Task[..., Any]]) -> list[tuple[str, JobState, Retention]]:
    """Every task's own retention of completed and failed jobs."""
    return [
        (task.name, state, retention)
        for task in tasks
        for state, retention in (
            (JobState.COMPLETED, task.options.keep_completed),
            (JobState.FAILED, task.options.keep_failed),
        )
    ]


async def _stalled(middleware: Middleware, *, ids: list[str], failed: bool) -> None:
    await middleware.stalled(ids, failed)


class Chores:
    """One worker's chores; ``start()`` runs them until they are cancelled."""

    def __init__(
        self,
        app: Conveyor,
        settings: WorkerSettings,
        *,
        health: StoreHealth,
        trimmer: Trimmer,
        describe: Callable[[int], WorkerInfo],
        obey: Callable[[WorkerCommand], None],
    ) -> None:
        self.app = app
        self.settings = settings
        self._health = health
        self._trimmer = trimmer
        self._describe = describe  # the worker's record as of a time on the store's clock
        self._obey = obey  # a command the store had for the worker
        self._suspects: dict[str, tuple[int, float]] = {}  # expired lease: (expiry, first seen)

    def start(self) -> list[asyncio.Task[None]]:
        settings = self.settings
        return [
            asyncio.create_task(self._every(settings.reclaim_interval_s, self.reclaim)),
            asyncio.create_task(self._every(settings.heartbeat_s, self.heartbeat)),
            asyncio.create_task(self._every(SCHEDULE_CHECK_S, self.fire_schedules)),
            asyncio.create_task(self._every(OUTCOME_CHECK_S, self.apply_outcomes)),
            asyncio.create_task(self._every(TICK_S, self.trim)),
            asyncio.create_task(self._every(EVENT_TRIM_S, self.trim_history)),
        ]

    async def _every(self, interval: float, chore: Chore) -> None:
        name = chore.__name__.replace("_", " ")
        while True:
            await asyncio.sleep(interval)
            try:
                if await chore() is not False:  # False: it did not need the store
                    self._health.ok()
            except BackendUnavailable as exc:
                self._health.failed(name, exc)
            except BackendError as exc:
                log.warning("%s failed: %s", name, exc)
            except Exception:  # a chore must never die while the worker claims
                log.exception("%s failed", name)

    async def reclaim(self) -> None:
        """Stall detection in two phases (see the module's docstring)."""
        backend, settings = self.app.backend, self.settings
        ripe = self._ripe(await backend.expired_leases(limit=EXPIRED_BATCH))
        if not ripe or not self._health.settled(
            settings.renew_interval_s + settings.reclaim_interval_s
        ):
            return
        result = await backend.reclaim_expired(
            max_stalls=settings.max_stalls, limit=len(ripe), suspects=ripe
        )
        for job_id in result.requeued + result.failed:
            self._suspects.pop(job_id, None)
            log.warning("job %s stalled: its lease expired unrenewed", job_id)
        hooks = self.app.hooks["stalled"]
        for ids, failed in ((result.requeued, False), (result.failed, True)):
            if ids and hooks:
                tell = functools.partial(_stalled, ids=ids, failed=failed)
                await call_hooks(hooks, tell, "stalled")
        if result.requeued:
            log.warning("reclaimed %d jobs with expired leases", len(result.requeued))
        if result.failed:
            log.warning("%d jobs failed after stalling too often", len(result.failed))

    def _ripe(self, expired: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The expired leases seen with the same expiry a check ago, or longer."""
        now = time.monotonic()
        previous, self._suspects = self._suspects, {}
        ripe = []
        for job_id, expiry in expired:
            seen = previous.get(job_id)
            if seen is not None and seen[0] == expiry:
                self._suspects[job_id] = seen
                if now - seen[1] >= self.settings.reclaim_interval_s * 0.9:
                    ripe.append((job_id, expiry))
            else:
                self._suspects[job_id] = (expiry, now)
        return ripe

    async def heartbeat(self) -> None:
        """The worker's record, and the command left for it (pause, resume) obeyed."""
        now = await self.app.backend.now_ms()  # the store's clock, as readers compare with
        info = self._describe(now)
        command = await self.app.backend.record_worker(worker_id=info.id, worker=info)
        if command is not None:  # obeyed, and the record says so at once
            self._obey(command)
            info = self._describe(now)
            if again := await self.app.backend.record_worker(worker_id=info.id, worker=info):
                self._obey(again)

    async def fire_schedules(self) -> None:
        await self.app.schedules.fire_due()

    async def apply_outcomes(self) -> None:
        """Outcomes flow children owe their parents that nobody applied yet
        (a child cancelled or stalled out, a worker that died in between)."""
        while await self.app.backend.apply_outcomes(child_ids=None, limit=OUTCOME_BATCH):
            pass

    async def trim_history(self) -> None:
        await self.app.backend.trim_history()

    async def trim(self) -> bool:
        return await self._trimmer.tick()
