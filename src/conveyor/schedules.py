"""``app.schedules``: managing schedules in the store, and firing them.

What a schedule is and the policies (exactly one job per tick, catch-up,
DST) are in ``cron.py``. Here: adding, replacing (add again with the same
id), pausing, resuming, removing and listing them, the ones declared in code
with ``@app.cron`` / ``@app.every``, and ``fire_due``, which every worker
runs about once a second.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec

from conveyor import validate
from conveyor.backends.base import Backend
from conveyor.backends.values import NewJob
from conveyor.cron import (
    Fired,
    Schedule,
    ScheduleInfo,
    checked,
    due_tick,
    ended,
    next_tick,
    spent,
    tick_job_id,
)
from conveyor.errors import InvalidInput, ScheduleNotFound
from conveyor.task import Task, find_task

__all__ = ["Bounds", "Schedules"]

log = logging.getLogger("conveyor.schedules")


class Schedules:
    def __init__(self, backend: Backend, tasks: Mapping[str, Task[Any, Any]]) -> None:
        self._backend = backend
        self._tasks = tasks  # the app's, as tasks are registered
        self.declared: dict[str, Schedule] = {}  # by id: saved when a worker starts

    # -- in code -------------------------------------------------------------------

    def declare(
        self,
        task: Task[Any, Any],
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        id: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        bounds: Bounds | None = None,
    ) -> Task[Any, Any]:
        schedule = self._build(task, cron, every, tz, id, args, kwargs, paused=False, anchor=0)
        schedule = (bounds or Bounds()).apply(schedule, now_ms=None)
        if schedule.id in self.declared:
            raise InvalidInput("id", f"schedule {schedule.id!r} is declared twice")
        self.declared[schedule.id] = schedule
        return task

    async def save_declared(self) -> None:
        """Store the schedules declared in code. One already stored with the
        same definition keeps its interval anchor, last tick and pause."""
        if not self.declared:
            return
        backend = self._backend
        stored = {s.id: s for s, _ in await backend.schedules()}
        now = await backend.now_ms()
        for schedule in self.declared.values():
            old = stored.get(schedule.id)
            if old is not None and _same_definition(old, schedule):
                continue
            paused = old.paused if old is not None else False
            anchor = now if schedule.start_at_ms is None else schedule.anchor_ms
            await backend.save_schedule(
                schedule=msgspec.structs.replace(schedule, anchor_ms=anchor, paused=paused)
            )

    # -- at run time ---------------------------------------------------------------

    async def add(
        self,
        task: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        id: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        paused: bool = False,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        limit: int | None = None,
    ) -> Schedule:
        """Add a schedule, or replace the one with the same ``id`` (default:
        the task's name). ``start_at``, ``end_at`` and ``limit`` bound it
        (no tick before, none after, at most ``limit`` ticks; ``conveyor.cron``)."""
        resolved = find_task(self._tasks, task) if isinstance(task, str) else task
        bounds = Bounds.of(start_at, end_at, limit)
        now = await self._backend.now_ms()
        schedule = self._build(resolved, cron, every, tz, id, args, kwargs, paused, anchor=now)
        schedule = bounds.apply(schedule, now_ms=now)
        await self._backend.save_schedule(schedule=schedule)
        return schedule

    async def pause(self, schedule_id: str) -> Schedule:
        return await self._set_paused(schedule_id, True)

    async def resume(self, schedule_id: str) -> Schedule:
        """Resume; ticks missed while paused make no jobs (the next one does)."""
        schedule = await self._set_paused(schedule_id, False)
        await self._backend.mark_tick(schedule_id=schedule_id, tick_ms=await self._backend.now_ms())
        return schedule

    async def remove(self, schedule_id: str) -> bool:
        return await self._backend.remove_schedule(schedule_id=validate.name("id", schedule_id))

    async def list(self) -> list[ScheduleInfo]:
        """Every schedule with its last tick and next run (on the store's clock)."""
        backend = self._backend
        listed = await backend.schedules()
        now = await backend.now_ms()
        return [_info(s, now, fired) for s, fired in listed]

    async def get(self, schedule_id: str) -> Schedule:
        for schedule, _ in await self._backend.schedules():
            if schedule.id == schedule_id:
                return schedule
        raise ScheduleNotFound(f"no schedule {schedule_id!r}")

    # -- firing --------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Enqueue the job of each schedule's latest due tick (one per tick
        whatever the number of workers: the job id is the tick's). Returns how
        many ticks were enqueued by this call or another worker's."""
        backend = self._backend
        listed = await backend.schedules()
        if not listed:
            return 0
        now = await backend.now_ms()
        fired = 0
        for schedule, ticks in listed:
            if spent(schedule, ticks):
                continue  # it has ended
            last = ticks.last_ms
            try:
                tick = None if schedule.paused else due_tick(schedule, now, last)
            except Exception as exc:  # a stored spec this code cannot follow: the rest fire
                log.warning("schedule %r cannot fire: %s: %s", schedule.id, type(exc).__name__, exc)
                continue
            if tick is None:
                continue
            task = self._tasks.get(schedule.task)
            if task is None:  # another app's task: a worker that has it fires it
                continue
            call = task.configure()
            job = NewJob(
                id=tick_job_id(schedule.id, tick),
                task=task.name,
                queue=call.queue,
                payload=bytes(schedule.payload),
                options=call.options,
                priority=call.priority,
                max_attempts=call.max_attempts,
            )
            await backend.enqueue(jobs=[job])
            await backend.mark_tick(schedule_id=schedule.id, tick_ms=tick, fired=job)
            fired += 1
        return fired

    # -- helpers -------------------------------------------------------------------

    def _build(
        self,
        task: Task[Any, Any],
        cron: str | None,
        every: float | None,
        tz: str,
        schedule_id: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        paused: bool,
        anchor: int,
    ) -> Schedule:
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise InvalidInput("args", "must be a list of positional arguments")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidInput("kwargs", "must be a mapping of keyword arguments")
        if not isinstance(tz, str):
            raise InvalidInput("tz", "must be a time zone name such as 'Europe/Paris'")
        signature = task.signature
        payload = signature.encode(signature.bind(tuple(args), dict(kwargs or {})))
        if cron is not None and not isinstance(cron, str):
            raise InvalidInput("cron", "must be a cron expression (a string)")
        return checked(
            Schedule(
                id=schedule_id if schedule_id is not None else task.name,
                task=task.name,
                cron=cron,
                every_s=None if every is None else validate.seconds("every", every),
                tz=tz,
                payload=msgspec.Raw(payload),
                paused=paused,
                anchor_ms=anchor,
            )
        )

    async def _set_paused(self, schedule_id: str, paused: bool) -> Schedule:
        schedule = msgspec.structs.replace(await self.get(schedule_id), paused=paused)
        await self._backend.save_schedule(schedule=schedule)
        return schedule


def _same_definition(a: Schedule, b: Schedule) -> bool:
    return msgspec.structs.replace(a, anchor_ms=0, paused=False) == msgspec.structs.replace(
        b, anchor_ms=0, paused=False
    )


def _info(schedule: Schedule, now: int, fired: Fired) -> ScheduleInfo:
    """A schedule as listed: its next run is None when paused or ended, or
    when its stored spec cannot be followed (a cron or time zone this code
    does not know)."""
    info = ScheduleInfo(
        schedule=schedule, last_tick_ms=fired.last_ms, next_run_ms=None, ticks=fired.ticks
    )
    try:
        if ended(schedule, now, fired):
            return msgspec.structs.replace(info, ended=True)
        if schedule.paused:
            return info
        due = due_tick(schedule, now, fired.last_ms)
        upcoming = due if due is not None else next_tick(schedule, max(now, fired.last_ms or 0))
        return msgspec.structs.replace(info, next_run_ms=upcoming)
    except Exception as exc:
        log.warning("schedule %r: no next run: %s: %s", schedule.id, type(exc).__name__, exc)
        return info


class Bounds(NamedTuple):
    """When a schedule may tick (``start_at``, ``end_at``, epoch ms) and how
    many ticks it fires at most (``limit``); None: no bound."""

    start_at_ms: int | None = None
    end_at_ms: int | None = None
    limit: int | None = None

    @classmethod
    def of(cls, start_at: object, end_at: object, limit: object) -> Bounds:
        return cls(
            None if start_at is None else validate.moment("start_at", start_at),
            None if end_at is None else validate.moment("end_at", end_at),
            None if limit is None else validate.count("limit", limit, minimum=1),
        )

    def apply(self, schedule: Schedule, *, now_ms: int | None) -> Schedule:
        """``schedule`` bounded (an interval's ticks then count from
        ``start_at``); with ``now_ms``, an ``end_at`` already past is refused."""
        if self.end_at_ms is not None and now_ms is not None and self.end_at_ms <= now_ms:
            raise InvalidInput("end_at", "is in the past: the schedule would never fire")
        anchor = schedule.anchor_ms
        if self.start_at_ms is not None and schedule.every_s is not None:
            anchor = self.start_at_ms - int(schedule.every_s * 1000)  # the first at start_at
        return checked(
            msgspec.structs.replace(
                schedule,
                anchor_ms=anchor,
                start_at_ms=self.start_at_ms,
                end_at_ms=self.end_at_ms,
                limit=self.limit,
            )
        )
