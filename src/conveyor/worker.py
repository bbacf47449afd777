"""The worker: claims jobs, runs them, and reports how each attempt ended.

One asyncio loop per process runs up to ``concurrency`` jobs: ``async def``
tasks on the loop, plain functions on a thread pool of the same size. The
worker holds the policy: whether a failure is retried and after how long (the
job's backoff), what a timeout means, and when a lease counts as lost. Every
state change is one backend call carrying the lease token.

Timeouts: an async job is cancelled at its timeout. A sync job cannot be
stopped from outside its thread; at its timeout the attempt is failed and the
thread's late result is dropped by fencing (a hard stop needs a child
process: the sandbox, a later addition).

Leases are renewed every ``lease_s / 3`` from the event loop; a job that
blocks the loop for longer than its lease can be reclaimed by another worker.
Expired leases anywhere in the store are reclaimed by every worker every
``reclaim_interval_s``; nothing else is needed to recover a dead worker's jobs.

Shutdown (``stop()``, SIGTERM, SIGINT): no new claims; running jobs get
``shutdown_grace_s`` to finish; whatever still runs then is cancelled and its
job released back to ``waiting`` (no attempt, no stall counted).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import random
import socket
import traceback
import uuid
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from conveyor.app import Conveyor
from conveyor.arguments import encode
from conveyor.backends.base import ClaimedJob, ProgressUpdate, WorkerInfo
from conveyor.context import JobContext, _current
from conveyor.errors import (
    BackendError,
    InvalidArguments,
    JobTimeout,
    NonRetryable,
    Retry,
    UnknownTask,
)
from conveyor.settings import WorkerSettings

__all__ = ["Worker"]

log = logging.getLogger("conveyor.worker")

BACKOFF_CAP_S = 5.0


class _Running:
    __slots__ = ("claimed", "context", "finishing", "task")

    def __init__(self, claimed: ClaimedJob, context: JobContext, task: asyncio.Task[None]) -> None:
        self.claimed = claimed
        self.context = context
        self.task = task
        self.finishing = False  # its result is being written: no renewal, no cancel


class Worker:
    def __init__(self, app: Conveyor, settings: WorkerSettings | None = None) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.processed = 0
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._threads = ThreadPoolExecutor(
            self.settings.concurrency, thread_name_prefix="conveyor-job"
        )
        self._rng = random.Random()
        self._started_ms = 0

    # -- control -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and begin a graceful shutdown (safe to call more than once)."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: no new jobs, %d running", self.id, len(self._running))
        self._stopping.set()
        self._slot_free.set()

    @property
    def active(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Run until ``stop()``; then drain and return."""
        settings = self.settings
        backend = self.app.backend
        await self.app.connect()
        self._started_ms = self.app.clock.now_ms()
        log.info(
            "worker %s started: queues=%s concurrency=%d",
            self.id, ",".join(settings.queues), settings.concurrency,
        )  # fmt: skip
        chores = [
            asyncio.create_task(self._every(settings.lease_s / 3, self._renew_leases)),
            asyncio.create_task(self._every(settings.reclaim_interval_s, self._reclaim)),
            asyncio.create_task(self._every(settings.heartbeat_s, self._heartbeat)),
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        failures = 0
        try:
            await self._heartbeat()
            while not self._stopping.is_set():
                free = settings.concurrency - len(self._running)
                if free <= 0:
                    self._slot_free.clear()
                    await self._slot_free.wait()
                    continue
                try:
                    claimed = await backend.claim(
                        queues=settings.queues,
                        limit=free,
                        worker_id=self.id,
                        lease_ms=int(settings.lease_s * 1000),
                    )
                    failures = 0
                except BackendError as exc:
                    failures += 1
                    delay = min(BACKOFF_CAP_S, 0.05 * 2**failures)
                    log.warning("claim failed (%s); retrying in %.2fs", exc, delay)
                    await asyncio.wait([stop_wait], timeout=delay)
                    continue
                for job in claimed:
                    self._start(job)
                if not claimed:
                    waiter = asyncio.create_task(
                        backend.wait_for_jobs(queues=settings.queues, timeout_s=5.0)
                    )
                    await asyncio.wait([waiter, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                    if not waiter.done():
                        waiter.cancel()
                    await asyncio.gather(waiter, return_exceptions=True)
        finally:
            await self._drain()
            stop_wait.cancel()
            for chore in chores:
                chore.cancel()
            await asyncio.gather(stop_wait, *chores, return_exceptions=True)
            try:
                await backend.record_worker(worker=None, worker_id=self.id)
            except BackendError as exc:
                log.warning("could not remove worker record: %s", exc)
            self._threads.shutdown(wait=False, cancel_futures=True)
            log.info("worker %s stopped after %d jobs", self.id, self.processed)

    async def _drain(self) -> None:
        if not self._running:
            return
        pending = [running.task for running in self._running.values()]
        _, still = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
        if not still:
            return
        leftovers = [r for r in self._running.values() if r.task in still]
        log.warning("grace period over: releasing %d running jobs", len(leftovers))
        for running in leftovers:
            running.context.lost = True  # the job must not write after this point
            running.task.cancel()
        await asyncio.gather(*still, return_exceptions=True)
        for running in leftovers:
            try:
                await self.app.backend.release(
                    job_id=running.claimed.job.id, token=running.claimed.token
                )
            except BackendError as exc:  # its lease will expire and it comes back
                log.warning("could not release job %s: %s", running.claimed.job.id, exc)

    # -- running one job -----------------------------------------------------------

    def _start(self, claimed: ClaimedJob) -> None:
        job_id = claimed.job.id
        loop = asyncio.get_running_loop()
        backend = self.app.backend

        async def write(update: ProgressUpdate) -> bool:
            return await backend.report_progress(job_id=job_id, token=claimed.token, update=update)

        context = JobContext(claimed.job, loop=loop, write=write)
        task = loop.create_task(self._execute(claimed, context), name=f"job:{job_id}")
        self._running[job_id] = _Running(claimed, context, task)
        task.add_done_callback(functools.partial(self._finished, job_id))

    def _finished(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self.processed += 1
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: worker error", job_id, exc_info=task.exception())

    async def _execute(self, claimed: ClaimedJob, context: JobContext) -> None:
        job = claimed.job
        backend = self.app.backend
        _current.set(context)
        try:
            task = self.app.get_task(job.task)
            args, kwargs = task.signature.decode(claimed.payload)
            if task.is_async:
                running: Awaitable[Any] = task.fn(*args, **kwargs)
            else:
                call = functools.partial(task.fn, *args, **kwargs)
                ctx = contextvars.copy_context()
                running = asyncio.get_running_loop().run_in_executor(self._threads, ctx.run, call)
            if job.options.timeout_s is None:
                result = await running
            else:
                deadline = asyncio.timeout(job.options.timeout_s)
                try:
                    async with deadline:
                        result = await running
                except TimeoutError as exc:
                    if deadline.expired():  # ours, not one raised by the job's own code
                        raise JobTimeout(f"timed out after {job.options.timeout_s}s") from exc
                    raise
            payload = encode(result)
        except asyncio.CancelledError:
            raise  # shutdown or a lost lease: whoever cancelled decides what to write
        except Exception as exc:
            await self._record_failure(claimed, context, exc)
            return
        self._finishing(job.id)
        await context.flush()
        if context.lost:
            log.warning("job %s: lease lost; result dropped", job.id)
            return
        if not await backend.complete(
            job_id=job.id, token=claimed.token, result=payload, retention=job.options.keep_completed
        ):
            log.warning("job %s: lease lost before completion; result dropped", job.id)

    async def _record_failure(
        self, claimed: ClaimedJob, context: JobContext, exc: Exception
    ) -> None:
        job = claimed.job
        retry_in = self._retry_delay(claimed, exc)
        error = f"{type(exc).__name__}: {exc}"
        if retry_in is None:
            log.warning("job %s failed (attempt %d): %s", job.id, job.attempts, error)
        else:
            log.info("job %s retrying in %.2fs: %s", job.id, retry_in, error)
        self._finishing(job.id)
        await context.flush()
        if context.lost:
            return
        written = await self.app.backend.fail(
            job_id=job.id,
            token=claimed.token,
            error=error,
            traceback="".join(traceback.format_exception(exc)),
            retry_in_ms=None if retry_in is None else int(retry_in * 1000),
            retention=job.options.keep_failed,
        )
        if not written:
            log.warning("job %s: lease lost before failure was recorded", job.id)

    def _finishing(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            running.finishing = True

    def _retry_delay(self, claimed: ClaimedJob, exc: Exception) -> float | None:
        """Seconds until the next attempt, or ``None`` for no more attempts."""
        job = claimed.job
        if isinstance(exc, NonRetryable | InvalidArguments | UnknownTask):
            return None
        if job.attempts >= job.max_attempts:
            return None
        if isinstance(exc, Retry) and exc.delay is not None:
            return exc.delay
        return job.options.backoff.delay(job.attempts, self._rng)

    # -- chores --------------------------------------------------------------------

    async def _every(self, interval: float, chore: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await chore()
            except BackendError as exc:
                log.warning("%s failed: %s", chore.__name__.strip("_"), exc)

    async def _renew_leases(self) -> None:
        """Extend the leases of running jobs; stop those whose lease is gone.

        A job whose result is being written is left alone: its write settles
        it either way, and a renewal racing that write would call it lost.
        """
        if not self._running:
            return
        held = [(job_id, r.claimed.token) for job_id, r in self._running.items() if not r.finishing]
        lost = await self.app.backend.extend_leases(
            leases=held, lease_ms=int(self.settings.lease_s * 1000)
        )
        for job_id in lost:
            running = self._running.get(job_id)
            if running is not None and not running.finishing:
                log.warning("job %s: lease lost (cancelled or reclaimed); stopping it", job_id)
                running.context.lost = True
                running.task.cancel()

    async def _reclaim(self) -> None:
        result = await self.app.backend.reclaim_expired(
            max_stalls=self.settings.max_stalls, limit=1000
        )
        if result.requeued:
            log.warning("reclaimed %d jobs with expired leases", len(result.requeued))
        if result.failed:
            log.warning("%d jobs failed after stalling too often", len(result.failed))

    async def _heartbeat(self) -> None:
        now = self.app.clock.now_ms()
        await self.app.backend.record_worker(
            worker_id=self.id,
            worker=WorkerInfo(
                id=self.id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(self.settings.queues),
                concurrency=self.settings.concurrency,
                active=len(self._running),
                processed=self.processed,
                started_at_ms=self._started_ms,
                last_seen_ms=now,
            ),
        )
