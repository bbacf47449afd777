"""Middleware: hooks around each attempt a worker runs and each enqueue.

Subclass ``Middleware``, override the hooks you need, and add it with
``app.use(middleware)``; every worker of that app and every enqueue through
it calls them, in the order added. The role of BullMQ's ``worker.on(...)``:
tracing, metrics (``conveyor.monitor`` uses these), logging of your own.

- ``enqueuing(jobs)``: before an enqueue (or a flow) is written; returns
  the jobs to write, the same or changed (``with_headers`` adds what the
  jobs should carry to their attempts, as ``conveyor.tracing`` does).
- ``enqueued(jobs, created)``: after they were written; ``created[i]`` is
  False where a job with that id already existed.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import msgspec

from conveyor.backends.rows import options_from
from conveyor.backends.values import NewJob
from conveyor.job import Job

__all__ = ["HOOKS", "Middleware", "Outcome", "call_hooks", "hooked", "prepare", "with_headers"]

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

    async def enqueuing(self, jobs: list[NewJob]) -> list[NewJob]:
        return jobs

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


HOOKS = ("enqueuing", "enqueued", "started", "retrying", "finished", "stalled")


def hooked(middleware: Sequence[Middleware]) -> dict[str, list[Middleware]]:
    """For each hook of ``HOOKS``, the middleware that override it, in
    order: a hook left as the base class's nothing is not even awaited."""
    return {
        name: [m for m in middleware if getattr(type(m), name) is not getattr(Middleware, name)]
        for name in HOOKS
    }


async def prepare(middleware: Sequence[Middleware], jobs: list[NewJob]) -> list[NewJob]:
    """The jobs each middleware's ``enqueuing`` returns, in order; one that
    raises is logged and leaves them as they were."""
    for each in middleware:
        try:
            prepared = await each.enqueuing(jobs)
        except Exception:
            log.exception("middleware %s.enqueuing failed", type(each).__name__)
            continue
        if [p.id for p in prepared] != [j.id for j in jobs]:
            log.error("middleware %s.enqueuing changed which jobs to add", type(each).__name__)
            continue
        jobs = prepared
    return jobs


def with_headers(jobs: Sequence[NewJob], headers: Mapping[str, str]) -> list[NewJob]:
    """``jobs`` carrying ``headers`` too (``JobOptions.headers``), to their
    attempts; the jobs of one task share their options: each is encoded once."""
    encoded: dict[bytes, bytes] = {}
    for raw in {job.options for job in jobs}:
        options = options_from(raw)
        merged = {**options.headers, **headers}
        encoded[raw] = msgspec.json.encode(msgspec.structs.replace(options, headers=merged))
    return [msgspec.structs.replace(job, options=encoded[job.options]) for job in jobs]


async def call_hooks(
    middleware: Sequence[Middleware], hook: Callable[[Middleware], Awaitable[None]], name: str
) -> None:
    """Run one hook of each middleware in order; one that raises is logged."""
    for each in middleware:
        try:
            await hook(each)
        except Exception:  # a hook never changes what happens to the job
            log.exception("middleware %s.%s failed", type(each).__name__, name)
