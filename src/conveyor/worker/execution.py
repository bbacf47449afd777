"""Running one attempt of a claimed job, and writing how it ended.

``Attempts`` runs a job's function (``async def`` on the loop, a plain
function on a thread of the pool, ``sandbox=True`` in a child process) within
its timeout, decides what the outcome means (complete; retry after the job's
backoff; fail for good; a ``RateLimited`` release) and writes it with the
job's lease token, keeping at it through a store outage while the lease may
still be ours. Policy lives here, not in the store: the retry classification
is ``retry.is_final``, the delay the job's ``Backoff``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import msgspec

from conveyor.app import Conveyor
from conveyor.arguments import encode
from conveyor.backends.values import ClaimedJob
from conveyor.context import JobContext, current_job, enter_job
from conveyor.errors import BackendError, BackendUnavailable, JobTimeout
from conveyor.job import ChildOutcomes, Job, JobState, Retention, retention_bucket
from conveyor.middleware import Ending, Outcome, call_hooks
from conveyor.retry import NonRetryable, RateLimited, Retry, is_final
from conveyor.worker.health import StoreHealth
from conveyor.worker.sandbox import SandboxPool
from conveyor.worker.slots import Slots
from conveyor.worker.trimming import Trimmer

__all__ = ["BACKOFF_CAP_S", "Attempts", "Running"]

log = logging.getLogger("conveyor.worker")

BACKOFF_CAP_S = 5.0  # retries of other errors; an unreachable store: see health.py

Write = Callable[[], Awaitable[bool]]


class Running:
    """A job a worker runs: its claim, its context, the task running it."""

    __slots__ = ("claimed", "context", "finishing", "pool", "task", "thread")

    task: asyncio.Task[None]  # set by the worker as it starts the attempt

    def __init__(self, claimed: ClaimedJob, context: JobContext, pool: int) -> None:
        self.claimed = claimed
        self.context = context
        self.pool = pool  # its queue's slots (conveyor.worker.slots)
        self.finishing = False  # its result is being written: no renewal, no cancel
        self.thread: concurrent.futures.Future[Any] | None = None  # a sync job's


class Kept(NamedTuple):
    """Where a job that ends is trimmed (its task's bucket, or its own) and by
    what retention (``job.retention_bucket``)."""

    bucket: str
    retention: Retention


class Attempts:
    """A worker's means of running attempts: its thread pool, its sandboxes."""

    def __init__(
        self,
        app: Conveyor,
        *,
        slots: Slots,
        wake: Callable[[], None],
        health: StoreHealth,
        trimmer: Trimmer,
        size: int,
    ) -> None:
        self.app = app
        self._slots = slots
        self._wake = wake  # a slot freed: the claim loop looks again
        self._health = health
        self._trimmer = trimmer
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="conveyor-job")
        self._sandbox = SandboxPool(size)  # no process until a job needs one
        self._rng = random.Random()

    async def close(self) -> None:
        """Kill the sandboxes' process groups; start no more threads."""
        await self._sandbox.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def run(self, running: Running) -> None:
        """Run the attempt and write its outcome; no job error escapes."""
        claimed, context = running.claimed, running.context
        enter_job(context)
        hooks = self.app.hooks
        if hooks["started"]:
            await call_hooks(hooks["started"], lambda m: m.started(claimed.job), "started")
        told = hooks["finished"] or hooks["retrying"]  # else no Outcome is made
        outcome: bytes | Exception
        started = time.monotonic()
        try:
            if claimed.job.children:
                claimed = await self._with_children(claimed, context)
            outcome = encode(await self._call(running, claimed))
        except asyncio.CancelledError:
            if told:  # shutdown or a lost lease: whoever cancelled writes what comes next
                await self._tell(running, _outcome(claimed.job, "lost", started, None))
            raise
        except Exception as exc:  # every job error is recorded; none escapes
            outcome = exc
        ending = await self._settle(running, outcome)
        if told:
            await self._tell(running, _outcome(claimed.job, ending, started, outcome))

    async def _tell(self, running: Running, outcome: Outcome) -> None:
        """The attempt's end to the app's middleware (``retrying`` first, if so)."""
        hooks, job = self.app.hooks, running.claimed.job
        if outcome.ending == "retrying" and hooks["retrying"]:
            await call_hooks(hooks["retrying"], lambda m: m.retrying(job, outcome), "retrying")
        if hooks["finished"]:
            await call_hooks(hooks["finished"], lambda m: m.finished(job, outcome), "finished")

    async def _with_children(self, claimed: ClaimedJob, context: JobContext) -> ClaimedJob:
        """A flow's parent: its children's outcomes at hand, and for a chain
        step the previous step's result as its first argument."""
        job = claimed.job
        delay = 0.05
        while True:  # the store's hiccup is not the job's failure
            try:
                outcomes = await self.app.backend.child_outcomes(parent_id=job.id)
                break
            except BackendUnavailable as exc:
                self._health.failed(f"reading the children of job {job.id}", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_S)
        context.children = ChildOutcomes(outcomes)
        if not job.pipe:
            return claimed
        previous = context.children[0] if context.children else None
        if previous is None or previous.state != JobState.COMPLETED:
            why = "nothing ran" if previous is None else f"{previous.state}: {previous.error}"
            raise NonRetryable(f"the chain step before this one did not complete ({why})")
        task = self.app.get_task(job.task)
        payload = task.signature.add_piped(
            claimed.payload, task.signature.names[0], encode(previous.result)
        )
        return msgspec.structs.replace(claimed, payload=payload)

    async def _call(self, running: Running, claimed: ClaimedJob) -> Any:
        """Run the job's function, within its timeout."""
        job = claimed.job
        task = self.app.get_task(job.task)
        thread: concurrent.futures.Future[Any] | None = None
        if task.sandbox:  # decoded and run in a child process, killed if cancelled
            call: Awaitable[Any] = self._sandbox.run(task, claimed, current_job())
        elif task.is_async:
            args, kwargs = task.signature.decode(claimed.payload)
            call = task.fn(*args, **kwargs)
        else:
            args, kwargs = task.signature.decode(claimed.payload)
            fn = functools.partial(task.fn, *args, **kwargs)
            thread = running.thread = self._threads.submit(contextvars.copy_context().run, fn)
            call = asyncio.wrap_future(thread)
        try:
            if job.options.timeout_s is None:
                return await call
            deadline = asyncio.timeout(job.options.timeout_s)
            try:
                async with deadline:
                    return await call
            except TimeoutError as exc:
                if deadline.expired():  # ours, not one raised by the job's own code
                    raise JobTimeout(f"timed out after {job.options.timeout_s}s") from exc
                raise
        finally:
            if thread is not None and not thread.done():
                self._thread_outlives(thread, running.pool)

    def _thread_outlives(self, thread: concurrent.futures.Future[Any], pool: int) -> None:
        """A sync job ended (timeout, cancel) but its thread cannot be stopped:
        its slot stays taken until the thread returns."""
        self._slots.thread_outlives(pool)
        loop = asyncio.get_running_loop()

        def released(_: concurrent.futures.Future[Any]) -> None:
            self._slots.thread_ended(pool)
            self._wake()

        def on_loop(done: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to free
                loop.call_soon_threadsafe(released, done)

        thread.add_done_callback(on_loop)

    async def _settle(self, running: Running, outcome: bytes | Exception) -> Ending:
        """Write how the attempt ended: complete, retry later, or fail for good."""
        job = running.claimed.job
        running.finishing = True
        self._slots.finishing(running.pool)
        self._wake()
        claimed = running.claimed
        finished: JobState | None  # completed, or failed for good: its retention applies
        ending = JobState.COMPLETED if isinstance(outcome, bytes) else JobState.FAILED
        kept = self._kept(job, ending)
        if isinstance(outcome, bytes):
            finished, write = JobState.COMPLETED, self._completion(claimed, outcome, kept)
        elif isinstance(outcome, RateLimited):
            finished, write = None, self._release(claimed, outcome)
        else:
            retry_in = self._retry_delay(claimed, outcome)
            finished = JobState.FAILED if retry_in is None else None
            write = self._failure(claimed, outcome, retry_in, kept)
        if not await self._write_final(job.id, running.context, write):
            return "lost"
        if finished is not None:
            self._trimmer.finished(kept.bucket, finished, kept.retention)
            if job.parent_id is not None:
                await self._tell_parent(job.id)
        if isinstance(outcome, bytes):
            return "completed"
        if isinstance(outcome, RateLimited):
            return "released"
        return "failed" if finished is not None else "retrying"

    def _kept(self, job: Job, state: JobState) -> Kept:
        """The retention of a job that finished in ``state``, and the bucket it
        is trimmed in: its task's, or its own when configured apart."""
        completed = state is JobState.COMPLETED
        options = job.options
        retention = options.keep_completed if completed else options.keep_failed
        task = self.app.tasks.get(job.task)
        if task is None:
            return Kept(job.task, retention)
        default = task.options.keep_completed if completed else task.options.keep_failed
        return Kept(retention_bucket(job.task, retention, default), retention)

    def _completion(self, claimed: ClaimedJob, result: bytes, kept: Kept) -> Write:
        job = claimed.job

        async def write() -> bool:
            return await self.app.backend.complete(
                job_id=job.id,
                token=claimed.token,
                result=result,
                retention=kept.retention,
                bucket=kept.bucket,
            )

        return write

    def _release(self, claimed: ClaimedJob, limited: RateLimited) -> Write:
        """Back to waiting, no attempt spent, its queue or group held."""
        job = claimed.job
        held = "group" if limited.group and job.group is not None else "queue"
        log.info(
            "job %s rate limited (%s): back to waiting, its %s held for %.2fs",
            job.id,
            limited,
            held,
            limited.delay,
        )
        block_ms = max(1, round(limited.delay * 1000))

        async def write() -> bool:
            return await self.app.backend.release(
                job_id=job.id, token=claimed.token, block_ms=block_ms, block_group=limited.group
            )

        return write

    def _failure(
        self, claimed: ClaimedJob, exc: Exception, retry_in: float | None, kept: Kept
    ) -> Write:
        job = claimed.job
        error = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        if retry_in is None:
            log.warning("job %s failed (attempt %d): %s", job.id, job.attempts, error)
        else:
            log.info("job %s retrying in %.2fs: %s", job.id, retry_in, error)

        async def write() -> bool:
            return await self.app.backend.fail(
                job_id=job.id,
                token=claimed.token,
                error=error,
                traceback=trace,
                retry_in_ms=None if retry_in is None else int(retry_in * 1000),
                retention=kept.retention,
                bucket=kept.bucket,
            )

        return write

    async def _write_final(self, job_id: str, context: JobContext, write: Write) -> bool:
        """Flush progress, then write the outcome; while the store is unreachable,
        keep trying as long as the lease may still be ours. Whether it was written."""
        delay = 0.05
        while not context.lost:
            try:
                await context.flush()
                if context.lost:
                    break
                if not await write():
                    log.warning("job %s: lease lost before its outcome was written", job_id)
                    return False
                return True
            except BackendUnavailable as exc:
                self._health.failed(f"writing the outcome of job {job_id}", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_CAP_S)
            except BackendError as exc:  # the lease expires and the job comes back
                log.error("job %s: outcome not written: %s", job_id, exc)
                return False
        log.warning("job %s: lease lost; outcome dropped", job_id)
        return False

    async def _tell_parent(self, job_id: str) -> None:
        """A flow's child has finished: hand its outcome to its parent now
        (stores that record it for later); the chore catches any left over."""
        try:
            await self.app.backend.apply_outcomes(child_ids=[job_id], limit=1)
        except BackendError as exc:
            log.warning("job %s: outcome for its parent left for later: %s", job_id, exc)

    def _retry_delay(self, claimed: ClaimedJob, exc: Exception) -> float | None:
        """Seconds until the next attempt, or ``None`` for no more attempts."""
        job = claimed.job
        if is_final(exc) or job.attempts >= job.max_attempts:
            return None
        if isinstance(exc, Retry) and exc.delay is not None:
            return exc.delay
        return job.options.backoff.delay(job.attempts, self._rng)


def _outcome(job: Job, ending: Ending, started: float, result: bytes | Exception | None) -> Outcome:
    """What the middleware hears of an attempt that ended as ``ending``."""
    wait_s = 0.0
    if job.started_at is not None:
        wait_s = max(0.0, (job.started_at - job.run_at).total_seconds())
    error = None
    if isinstance(result, Exception):
        error = f"{type(result).__name__}: {result}"
    return Outcome(ending=ending, run_s=time.monotonic() - started, wait_s=wait_s, error=error)
