"""The store contract's management of jobs and queues from outside a run:
changing a job before it starts, and the bulk actions on a queue (drain,
obliterate), which go in bounded batches, each atomic, so that a
million-job queue never holds the store for long.
``Backend`` (``base.py``) has these methods too; they live here to keep that
module about the life of one run. Each states what is atomic; each change
writes its event in the same step (``conveyor.events``)."""

from __future__ import annotations

import abc
from typing import Literal

from conveyor.backends.values import JobChange
from conveyor.job import JobState

__all__ = ["CHANGEABLE", "RETRIED", "Managing", "WorkerCommand"]

# What a worker may be told through the store (``command_worker``).
WorkerCommand = Literal["pause", "resume"]

# The states of a job that has not started: those ``change_job`` may change
# (a new due time: waiting and delayed only; a parent waits for its children).
CHANGEABLE = ("waiting", "delayed", "waiting_children")
# The states ``retry_jobs`` takes named jobs from unless told others.
RETRIED = (JobState.FAILED, JobState.CANCELLED)


class Managing(abc.ABC):
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
