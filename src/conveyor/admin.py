"""Managing jobs and queues from outside a run: pausing and limiting
queues; retrying, cancelling, removing, promoting and cleaning jobs;
draining and obliterating queues; pausing workers; reading and releasing
dedup keys; and changing a job before it starts. ``Conveyor`` has these
methods (it is an ``Admin``); each validates its input, then makes one call
of the store contract, atomic as that call states (``conveyor.backends``).

Changing a job that has not started (``change_delay``, ``change_priority``,
``update_args``) applies to a waiting or delayed job, and to a flow's parent
still waiting for its children (but for its delay). On a job that has
started or finished the change is not made and the call returns False: the
run it would change has begun (a worker claimed it between the caller's
look and the change), so nothing is half-applied; an unknown id raises
``JobNotFound``. Each change writes its event (``conveyor.events``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from conveyor import validate
from conveyor.backends.base import Backend
from conveyor.backends.managing import RETRIED
from conveyor.backends.values import JobChange
from conveyor.clock import Clock
from conveyor.errors import InvalidInput, JobNotFound
from conveyor.job import JobState
from conveyor.limits import EVERY_GROUP, Limits, Rate, group_name
from conveyor.task import Task, find_task

__all__ = ["CLEANABLE", "Admin", "job_state"]

CLEANABLE = (
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.WAITING,
    JobState.DELAYED,
)


class Admin:
    backend: Backend
    clock: Clock
    tasks: dict[str, Task[Any, Any]]

    # -- queues --------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        await self.backend.set_paused(queue=validate.name("queue", queue), paused=True)

    async def resume(self, queue: str) -> None:
        await self.backend.set_paused(queue=validate.name("queue", queue), paused=False)

    async def set_limits(
        self,
        queue: str,
        *,
        group: str | None = None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | str | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        """Limit a queue, every group of it (``group="*"``) or one group, across
        all workers: ``max_active`` jobs running at once, and a ``rate`` such as
        ``"100/m"`` (a sliding window; see ``conveyor.limits``). A limit not
        given stays as it is; ``None`` lifts it (a group's own then falls back
        to the queue's default for groups). A worker that finds a queue full
        claims from it again when a job of it ends (on Redis, within about a
        second, unless it ended on that worker)."""
        queue = validate.name("queue", queue)
        if group is not None and group != EVERY_GROUP:
            group = group_name(group)
        if max_active is not msgspec.UNSET and max_active is not None:
            max_active = validate.count("max_active", max_active, minimum=1)
        if rate is not msgspec.UNSET and rate is not None:
            rate = Rate.parse(rate)
        await self.backend.set_limits(queue=queue, group=group, max_active=max_active, rate=rate)

    async def limits(self, queue: str) -> dict[str | None, Limits]:
        """The limits set on ``queue``: its own under None, the groups' default
        under ``"*"``, and each group's own under its name; a scope that may
        not start a job now (its rate window is full, or a ``RateLimited``
        job holds it) has ``held_ms``, how long until it may, and is listed
        even without limits of its own."""
        return await self.backend.get_limits(queue=validate.name("queue", queue))

    async def retry(self, job_id: str, *, state: JobState | str | None = None) -> bool:
        """Send a finished job back to ``waiting`` with fresh attempts: a failed
        or cancelled one, or with ``state`` only one in that state (``"completed"``
        runs a completed job again). Attempts start from 0; its result, error
        and progress are cleared, its log kept. A flow's parent with children
        still unfinished goes to ``waiting_children``; a flow's child first
        delivers the outcome its parent is owed. False if it is in no such state."""
        ids = [validate.name("job_id", job_id)]
        states: tuple[JobState, ...] = RETRIED
        if state is not None:
            states = (job_state(state),)
            if not states[0].finished:
                raise InvalidInput("state", "must be completed, failed or cancelled")
        await self.backend.apply_outcomes(child_ids=ids, limit=1)
        return await self.backend.retry_jobs(job_ids=ids, queue=None, states=states) == 1

    async def retry_failed(self, queue: str | None = None) -> int:
        """Send every failed job (of ``queue``) back to ``waiting``; returns how many."""
        if queue is not None:
            validate.name("queue", queue)
        return await self.backend.retry_jobs(job_ids=None, queue=queue)

    async def cancel(self, job_id: str) -> bool:
        """Cancel an unfinished job (a running one stops within a renewal).
        A flow's parent hears of it as of a failure (``conveyor.flow``)."""
        cancelled = await self.backend.cancel(job_id=validate.name("job_id", job_id))
        if cancelled:
            await self.backend.apply_outcomes(child_ids=[job_id], limit=1)
        return cancelled

    async def remove(self, job_id: str) -> bool:
        """Delete a job that is not running. A flow's parent still waiting
        for it hears of it as cancelled, with error ``removed``."""
        removed = await self.backend.remove(job_id=validate.name("job_id", job_id))
        if removed:
            await self.backend.apply_outcomes(child_ids=[job_id], limit=1)
        return removed

    async def promote(self, job_id: str) -> bool:
        return await self.backend.promote(job_id=validate.name("job_id", job_id))

    async def clean(
        self,
        state: JobState | str,
        *,
        queue: str | None = None,
        older_than: float = 0.0,
        keep: int = 0,
        limit: int = 10_000,
    ) -> int:
        """Delete jobs in ``state`` (completed, failed, cancelled, or waiting
        or delayed) older than ``older_than`` seconds, sparing the newest
        ``keep``; at most ``limit`` per call. A finished job's age runs from
        when it finished, a waiting or delayed one's from its enqueue. In
        batches, each atomic; each job has its ``removed`` event."""
        cleaned = job_state(state)
        if cleaned not in CLEANABLE:
            raise InvalidInput("state", "must be completed, failed, cancelled, waiting or delayed")
        removed = await self.backend.clean(
            queue=None if queue is None else validate.name("queue", queue),
            state=cleaned,
            older_than_ms=int(validate.seconds("older_than", older_than) * 1000),
            keep=validate.count("keep", keep),
            limit=validate.count("limit", limit, minimum=1),
        )
        await self._tell_parents(removed)
        return removed

    async def drain(self, queue: str, *, delayed: bool = False) -> int:
        """Delete the queue's waiting jobs (and, with ``delayed``, its delayed
        ones), leaving running and finished jobs and flows' parents waiting
        for children; returns how many went. In batches, each atomic: a job a
        worker claims meanwhile runs."""
        removed = await self.backend.drain(
            queue=validate.name("queue", queue), delayed=validate.flag("delayed", delayed)
        )
        await self._tell_parents(removed)
        return removed

    async def obliterate(self, queue: str, *, force: bool = False) -> int:
        """Delete the queue and every job in it, then the queue itself (its
        pause, limits and groups; its statistics stay). Refused with
        ``QueueBusy``, changing nothing, while any of its jobs runs, unless
        ``force`` (their workers then lose their leases: their results are
        dropped). The queue is paused first, so no claim starts; a crash
        part-way leaves it paused and consistent: obliterate it again.
        Returns how many jobs went (0: no such queue)."""
        removed = await self.backend.obliterate(
            queue=validate.name("queue", queue), force=validate.flag("force", force)
        )
        await self._tell_parents(removed)
        return removed

    async def _tell_parents(self, removed: int) -> None:
        """Hand the outcomes removed flow children owe their parents over now
        (the workers would, within seconds)."""
        if removed:
            await self.backend.apply_outcomes(child_ids=None, limit=min(removed, 1000))

    # -- workers ---------------------------------------------------------------------

    async def pause_worker(self, worker_id: str) -> bool:
        """Tell a live worker (an id of ``app.workers()``) to stop claiming, its
        running jobs going on; it obeys at its next heartbeat (``heartbeat_s``,
        5 s by default) and its record then says ``paused``. False if no
        worker of that id has a heartbeat record."""
        return await self.backend.command_worker(
            worker_id=validate.name("worker_id", worker_id), command="pause"
        )

    async def resume_worker(self, worker_id: str) -> bool:
        """Tell a paused worker to claim again, as ``pause_worker`` does."""
        return await self.backend.command_worker(
            worker_id=validate.name("worker_id", worker_id), command="resume"
        )

    # -- dedup keys ------------------------------------------------------------------

    async def dedup_key_owner(self, key: str) -> str | None:
        """The id of the job holding the dedup ``key``: a throttle's while its
        window is open, a debounce key's last job; None when the key is free."""
        return await self.backend.dedup_key_owner(key=validate.name("dedup_key", key))

    async def release_dedup_key(self, key: str) -> bool:
        """End a throttle or debounce window now: the next enqueue with ``key``
        makes a new job (a debounced job already waiting stays, and runs).
        False if the key was free already."""
        return await self.backend.release_dedup_key(key=validate.name("dedup_key", key))

    # -- changing a job before it starts ------------------------------------------

    async def change_delay(
        self,
        job_id: str,
        delay: float | timedelta | None = None,
        *,
        run_at: datetime | None = None,
    ) -> bool:
        """Run a waiting or delayed job ``delay`` seconds from now, or at
        ``run_at`` (not in the past); a delay of 0 makes it ready now (as
        ``promote``). False if it has started or finished (or waits for its
        children); ``JobNotFound`` if there is no such job."""
        if (delay is None) == (run_at is None):
            raise InvalidInput("delay", "give delay or run_at, one of them")
        if run_at is not None:
            at = validate.moment("run_at", run_at)
            if at < self.clock.now_ms():
                raise InvalidInput("run_at", "is in the past: give a delay of 0 to run it now")
        else:
            delay_ms = int(validate.seconds("delay", delay) * 1000)
            at = await self.backend.now_ms() + delay_ms  # a delay runs on the store's clock
        return await self._change(job_id, JobChange(run_at_ms=at))

    async def change_priority(
        self, job_id: str, priority: int, *, lifo: bool | None = None
    ) -> bool:
        """Give a job that has not started another ``priority``, re-sorting it
        among its queue's (or group's) waiting jobs; ``lifo`` True puts it
        first of that priority, False in order of when it became ready, None
        keeps its order. False if it has started or finished."""
        order = None if lifo is None else validate.flag("lifo", lifo)
        change = JobChange(priority=validate.priority(priority), lifo=order)
        return await self._change(job_id, change)

    async def update_args(self, job_id: str, /, *args: Any, **kwargs: Any) -> bool:
        """Replace the arguments of a job that has not started, checked against
        its task's signature and hints as an enqueue checks them (the task
        must be registered on this app). False if it has started or finished."""
        job = await self.backend.get_job(job_id=validate.name("job_id", job_id))
        if job is None:
            raise JobNotFound(job_id)
        task = find_task(self.tasks, job.task)
        payload = task.encode_args(args, kwargs, piped=job.pipe)
        return await self._change(job_id, JobChange(payload=payload))

    async def _change(self, job_id: str, change: JobChange) -> bool:
        changed = await self.backend.change_job(
            job_id=validate.name("job_id", job_id), change=change
        )
        if changed is None:
            raise JobNotFound(job_id)
        return changed


def job_state(value: JobState | str) -> JobState:
    """A ``JobState`` from itself or its name; ``InvalidInput`` naming ``state``."""
    try:
        return JobState(value)
    except ValueError:
        choices = ", ".join(s.value for s in JobState)
        raise InvalidInput("state", f"must be one of {choices}") from None
