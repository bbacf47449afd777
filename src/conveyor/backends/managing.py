"""The store contract's management of jobs and queues from outside a run:
pausing and limiting queues, retrying, cancelling, removing and cleaning
jobs, changing a job before it starts, commands to workers, dedup keys, and
the bulk actions on a queue (drain, obliterate), which go in bounded
batches, each atomic, so that a million-job queue never holds the store for
long.
``Backend`` (``base.py``) has these methods too; they live here to keep that
module about the life of one run. Each states what is atomic; each change
writes its event in the same step (``conveyor.events``)."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import msgspec

from conveyor.backends.values import JobChange
from conveyor.job import JobState
from conveyor.limits import Limits, Rate

__all__ = ["CHANGEABLE", "RETRIED", "Managing", "WorkerCommand", "worker_command"]

# What a worker may be told through the store (``command_worker``).
WorkerCommand = Literal["pause", "resume"]


def worker_command(stored: str | bytes) -> WorkerCommand | None:
    """A stored command this code knows (another version's is dropped)."""
    text = stored.decode() if isinstance(stored, bytes) else stored
    return "pause" if text == "pause" else "resume" if text == "resume" else None


# The states of a job that has not started: those ``change_job`` may change
# (a new due time: waiting and delayed only; a parent waits for its children).
CHANGEABLE = ("waiting", "delayed", "waiting_children")
# The states ``retry_jobs`` takes named jobs from unless told others.
RETRIED = (JobState.FAILED, JobState.CANCELLED)


class Managing(abc.ABC):
    @abc.abstractmethod
    async def set_paused(self, *, queue: str, paused: bool) -> None:
        """Pause or resume claiming from ``queue``. Jobs keep their states."""

    @abc.abstractmethod
    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        """Set limits of a scope, atomically: ``queue`` as a whole (``group``
        None), every group of it by default (``EVERY_GROUP``) or one group.
        ``UNSET`` leaves a limit as it is; ``None`` lifts it (a group's own
        limit then falls back to the default). Holds across all workers."""

    @abc.abstractmethod
    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        """The limits set on ``queue``: under None its own, under
        ``EVERY_GROUP`` the groups' default, and each group's own, each with
        ``held_ms`` when it may not start a job now (a full rate window, a
        ``RateLimited`` hold: how long until it may). Scopes without limits
        are left out, unless held."""

    @abc.abstractmethod
    async def retry_jobs(
        self,
        *,
        job_ids: Sequence[str] | None,
        queue: str | None,
        states: Sequence[JobState] = RETRIED,
    ) -> int:
        """Move finished jobs back to ``waiting`` with fresh attempts (no
        result, error or progress; logs kept).

        ``job_ids`` names them, each moved only from one of ``states``
        (default failed or cancelled; completed too when named); ``None``
        means every failed job (of ``queue``, if given). Returns how many
        moved. Each job moves atomically.
        """

    @abc.abstractmethod
    async def cancel(self, *, job_id: str) -> bool:
        """Move an unfinished job to ``cancelled`` (error ``cancelled``), atomically.

        An active job loses its lease: its worker sees it at the next renewal
        and its late result is dropped. ``False`` if finished or missing.
        """

    @abc.abstractmethod
    async def remove(self, *, job_id: str) -> bool:
        """Delete a job that is not active, with its logs. ``False`` if active or missing."""

    @abc.abstractmethod
    async def promote(self, *, job_id: str) -> bool:
        """Make a ``delayed`` job ``waiting`` now. ``False`` if not delayed."""

    @abc.abstractmethod
    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        """Delete up to ``limit`` jobs in ``state`` (finished, waiting or
        delayed) that finished (waiting or delayed: were enqueued) more than
        ``older_than_ms`` ago, sparing the newest ``keep``, in batches, each
        atomic. Returns how many."""

    # -- changing jobs and queues -------------------------------------------------

    @abc.abstractmethod
    async def change_job(self, *, job_id: str, change: JobChange) -> bool | None:
        """Apply ``change`` to a job that has not started, atomically (one
        script, one transaction): all of it, or nothing when the job is not
        in one of the ``CHANGEABLE`` states (a due time: waiting or delayed).

        A due time at or before now makes the job waiting (as ``promote``),
        a later one delayed; a job that moves between the two keeps its place
        as a promoted or delayed one would. ``priority`` re-sorts a waiting
        job among its queue's (or group's); ``lifo`` True puts it first of its
        priority, as the newest LIFO job, False by the time it became ready.
        Returns True when changed, False when not changeable (started,
        finished, or waiting for children, for a due time), None when there
        is no such job. The event: the new state's when it moved (``delayed``,
        ``waiting``), else ``changed``."""

    @abc.abstractmethod
    async def drain(self, *, queue: str, delayed: bool) -> int:
        """Delete the queue's waiting jobs (and, with ``delayed``, its delayed
        ones), batch by batch; active, finished and waiting-for-children jobs
        stay. Each removed job has its ``removed`` event, and a flow's parent
        waiting for it hears of it as cancelled (error ``removed``). A job a
        worker claims meanwhile runs; one enqueued meanwhile may stay. Returns
        how many went."""

    @abc.abstractmethod
    async def obliterate(self, *, queue: str, force: bool) -> int:
        """Delete the queue and everything in it: pause it (no claim starts),
        refuse with ``QueueBusy`` while any of its jobs is active unless
        ``force`` (then those are removed too and their workers lose their
        leases), delete its jobs batch by batch, then forget the queue itself
        (its pause, limits, groups) once it holds no job, a job enqueued
        meanwhile being removed first. A crash part-way leaves a paused,
        consistent queue that ``obliterate`` finishes. Its statistics stay
        (history; they age out). Returns how many jobs went; 0 for no such
        queue."""

    @abc.abstractmethod
    async def dedup_key_owner(self, *, key: str) -> str | None:
        """The id of the job that holds the dedup ``key`` now: a throttle's
        while its window is open, a debounce key's last job (None: the key is
        free, an enqueue with it makes a new job)."""

    @abc.abstractmethod
    async def release_dedup_key(self, *, key: str) -> bool:
        """Free the dedup ``key`` now, atomically: a throttle's window ends
        early, a debounce key stops naming its job (the next enqueue with it
        makes a new job and leaves that one be). False if it was free."""

    @abc.abstractmethod
    async def command_worker(self, *, worker_id: str, command: WorkerCommand) -> bool:
        """Leave ``command`` for the live worker ``worker_id`` (replacing one it
        has not taken yet); it takes it at its next heartbeat
        (``record_worker``). False, leaving nothing, if no such worker has a
        heartbeat record."""
