"""The store contract's management of jobs and queues from outside a run:
changing a job before it starts, and the bulk actions on a queue.
``Backend`` (``base.py``) has these methods too; they live here to keep that
module about the life of one run. Each states what is atomic; each change
writes its event in the same step (``conveyor.events``)."""

from __future__ import annotations

import abc

from conveyor.backends.values import JobChange
from conveyor.job import JobState

__all__ = ["CHANGEABLE", "RETRIED", "Managing"]

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
