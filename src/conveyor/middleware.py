"""Middleware: hooks around each attempt a worker runs and each enqueue.

Subclass ``Middleware``, override the hooks you need, and add it with
``app.use(middleware)``; every worker of that app and every enqueue through
it calls them, in the order added. The role of BullMQ's ``worker.on(...)``:
tracing, metrics (``conveyor.monitor`` uses these), logging of your own.

- ``enqueued(jobs, created)``: after an enqueue (or a flow) was written;
  ``created[i]`` is False where a job with that id already existed.
- ``started(job)``: in the worker, just before the attempt's function runs
  (``job.attempts`` is this attempt's number).
- ``finished(job, outcome)``: after its outcome was written (or lost): an
  ``Outcome`` with what happened (``completed``, ``retrying``, ``failed``,
  ``released``, ``lost``), the run's and the wait's seconds, and the error.
- ``retrying(job, outcome)``: also called, before ``finished``, when the
  attempt failed and the job will run again.
- ``stalled(job_ids, failed)``: when a worker reclaimed jobs whose lease
  expired (``failed``: those that stalled too often).

A hook runs on the worker's event loop: keep it quick, or hand the work to a
task of your own. An exception in a hook is logged and ignored; it never
changes a job's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import msgspec

from conveyor.backends.values import NewJob
from conveyor.job import Job

__all__ = ["Middleware", "Outcome", "call_hooks"]

log = logging.getLogger("conveyor.middleware")

Ending = Literal["completed", "retrying", "failed", "released", "lost"]


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended. ``run_s``: from the function's start to its
    end; ``wait_s``: from when the job could first start (its enqueue or
    ``run_at``) to this attempt's start; ``error``: ``Type: message``."""

    ending: Ending
    run_s: float
    wait_s: float
    error: str | None = None


class Middleware:
    """Hooks with nothing in them: override the ones you need."""

    async def enqueued(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        return None

    async def started(self, job: Job) -> None:
        return None

    async def retrying(self, job: Job, outcome: Outcome) -> None:
        return None

    async def finished(self, job: Job, outcome: Outcome) -> None:
        return None

    async def stalled(self, job_ids: Sequence[str], failed: bool) -> None:
        return None


async def call_hooks(
    middleware: Sequence[Middleware], hook: Callable[[Middleware], Awaitable[None]], name: str
) -> None:
    """Run one hook of each middleware in order; one that raises is logged."""
    for each in middleware:
        try:
            await hook(each)
        except Exception:  # a hook never changes what happens to the job
            log.exception("middleware %s.%s failed", type(each).__name__, name)
