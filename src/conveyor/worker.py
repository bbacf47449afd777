"""The worker: claims jobs, runs them, and reports how each attempt ended.

One asyncio loop per process runs as many jobs as it has slots (per queue,
``conveyor.slots``): ``async def`` tasks on the loop, plain functions on a
thread pool with a thread per slot. Finished jobs beyond their task's
retention are trimmed apart from the completions (``conveyor.trimming``). The
worker holds the policy: whether a failure is retried and after how long (the
job's backoff), what a timeout means, and when a lease counts as lost. Every
state change is one backend call carrying the lease token.

Timeouts: an async job is cancelled at its timeout. A sync job cannot be
stopped from outside its thread; at its timeout the attempt is failed and the
thread's late result is dropped by fencing. A hard stop needs
``sandbox=True``: the job runs in a child process whose process group is
killed at its timeout or cancel (``sandbox.py``).

Leases are renewed every 2 s (a third of a shorter lease) from a thread of
the worker's own with its own connection (``LeaseKeeper``), so a job that
blocks the event loop or hogs the CPU in pure Python keeps its lease while
its worker lives. A C call that holds the GIL stops every thread; the lease
(30 s by default) outlasts a few seconds of that. A renewal is also how a
worker learns that a running job was cancelled.

Every worker checks the whole store for stalled jobs every
``reclaim_interval_s``, in two phases: it notes the expired leases, and at
its next check reclaims those still expired with the same expiry (nobody
renewed them). So a dead worker's jobs are back within lease + 2 checks, and
after a store outage (when every lease looks expired) nothing is reclaimed
until live workers have had a renewal interval to renew. Each reclaimed job
gets a ``stalled: ...`` line in its log; one that stalls more than
``max_stalls`` times (default 1) fails with error ``stalled``.

A job that raises ``RateLimited`` goes back to ``waiting`` with no attempt
spent, holding its queue or group in the same step. A flow's parent gets its
children's outcomes before it runs (a chain step its first argument), and a
child that finished hands its outcome to its parent at once; every worker
also applies any outcome left over about once a second (``conveyor.flow``).

Shutdown (``stop()``, SIGTERM, SIGINT): no new claims; running jobs get
``shutdown_grace_s`` to finish; whatever still runs then is cancelled and its
job released back to ``waiting`` (no attempt, no stall counted), but for a
sync job whose thread still runs: it keeps its lease, renewed (after ``run()``
has returned) until the thread ends, so it never runs elsewhere meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from conveyor import trimming
from conveyor.app import Conveyor
from conveyor.arguments import encode
from conveyor.backends.values import ClaimedJob, ProgressUpdate, QueueSlots, Taker, WorkerInfo
from conveyor.context import JobContext, current_job, enter_job
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    JobTimeout,
)
from conveyor.health import StoreHealth
from conveyor.job import ChildOutcomes, JobState, Retention
from conveyor.leases import HeldLeases, LeaseKeeper
from conveyor.retry import NonRetryable, RateLimited, Retry, is_final
from conveyor.sandbox import SandboxPool
from conveyor.settings import WorkerSettings
from conveyor.slots import Slots

__all__ = ["Worker"]

log = logging.getLogger("conveyor.worker")

BACKOFF_CAP_S = 5.0  # retries of other errors; an unreachable store: see health.py
SCHEDULE_CHECK_S = 1.0  # how often due schedule ticks are looked for
FINISH_WAIT_S = 2.0  # at the shutdown deadline, extra time for outcomes being written
OUTCOME_CHECK_S = 1.0  # how often outcomes owed to flow parents are looked for
OUTCOME_BATCH = 100


class _Running:
    __slots__ = ("claimed", "context", "finishing", "pool", "task", "thread")

    def __init__(
        self, claimed: ClaimedJob, context: JobContext, task: asyncio.Task[None], pool: int
    ) -> None:
        self.claimed = claimed
        self.context = context
        self.task = task
        self.pool = pool  # its queue's slots (conveyor.slots)
        self.finishing = False  # its result is being written: no renewal, no cancel
        self.thread: concurrent.futures.Future[Any] | None = None  # a sync job's


class Worker:
    def __init__(self, app: Conveyor, settings: WorkerSettings | None = None) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.processed = 0
        self._running: dict[str, _Running] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._slots = Slots(self.settings.pools)
        self._threads = ThreadPoolExecutor(self.settings.slots, thread_name_prefix="conveyor-job")
        self._sandbox = SandboxPool(self.settings.slots)  # no process until a job needs one
        self._rng = random.Random()
        self._started_ms = 0
        self._leases = HeldLeases()
        self._stuck: set[concurrent.futures.Future[Any]] = set()  # threads past the grace
        self._failures = 0  # claims and waits failed in a row (not by an outage)
        self._lease_ms = int(self.settings.lease_s * 1000)
        self._health = StoreHealth()
        self._suspects: dict[str, tuple[int, float]] = {}  # expired lease: (expiry, first seen)
        self._trimmer = trimming.Trimmer(app.backend, self._retentions)

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
        self._started_ms = await backend.now_ms()
        log.info(
            "worker %s started: %s",
            self.id,
            ", ".join(f"{'+'.join(queues)} {slots} slots" for queues, slots in settings.pools),
        )
        keeper = LeaseKeeper(
            self.app.backend,
            self._leases,
            interval_s=settings.renew_interval_s,
            lease_ms=self._lease_ms,
            on_lost=self._leases_lost,
        )
        chores = [
            asyncio.create_task(self._every(settings.reclaim_interval_s, self._reclaim)),
            asyncio.create_task(self._every(settings.heartbeat_s, self._heartbeat)),
            asyncio.create_task(self._every(SCHEDULE_CHECK_S, self._fire_schedules)),
            asyncio.create_task(self._every(OUTCOME_CHECK_S, self._apply_outcomes)),
            asyncio.create_task(self._every(trimming.TICK_S, self._trim)),
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        keeper.start()
        try:
            await self._heartbeat()
            await self.app.schedules.save_declared()
            await self._claim_loop(stop_wait)
        finally:
            await self._drain()
            await self._trimmer.close()
            await self._sandbox.close()  # kills the sandboxes' process groups
            if self._stuck:  # their leases are renewed until their threads end
                keeper.linger()
            else:
                await asyncio.to_thread(keeper.stop)
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

    async def _claim_loop(self, stop_wait: asyncio.Task[Any]) -> None:
        """Claim into the free slots until stopped; after a claim that took
        fewer jobs than it had room for (it found no more ready), wait: jobs
        that arrive meanwhile end the wait at once, and may come with it."""
        handed: list[ClaimedJob] = []  # jobs a wait was handed, claimed for us
        try:
            while not self._stopping.is_set():
                self._slot_free.clear()
                rooms = self._slots.free()
                if handed:  # their claim is made: no call needed
                    claimed, handed = handed, []
                elif not rooms:
                    await self._slot_free.wait()
                    continue
                else:
                    try:
                        claimed = await self.app.backend.claim(
                            slots=rooms, worker_id=self.id, lease_ms=self._lease_ms
                        )
                    except Exception as exc:  # the claim loop must not die
                        await self._back_off("claim", exc, stop_wait)
                        continue
                    self._failures = 0
                    self._health.ok()
                for job in claimed:
                    self._start(job)
                if len(claimed) < sum(room.free for room in rooms):
                    handed = await self._wait(rooms, stop_wait)
        finally:
            for job in handed:  # handed as the worker stopped: they get the grace too
                self._start(job)

    async def _wait(
        self, rooms: list[QueueSlots], stop_wait: asyncio.Task[Any]
    ) -> list[ClaimedJob]:
        """Wait for jobs in ``rooms``' queues, for a stop, or (when a pool is
        full) for a slot to free; the jobs the wait was handed, if any."""
        idle = [queue for room in rooms for queue in room.queues]
        waiter = asyncio.create_task(
            self.app.backend.wait_for_jobs(queues=idle, timeout_s=5.0, taker=self._taker())
        )
        waits = [waiter, stop_wait]
        if len(rooms) < len(self.settings.pools):  # a full pool's slot may free meanwhile
            waits.append(asyncio.create_task(self._slot_free.wait()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for pending in (waiter, *waits[2:]):
            if not pending.done():
                pending.cancel()
        (outcome, *_) = await asyncio.gather(waiter, *waits[2:], return_exceptions=True)
        if isinstance(outcome, list):
            return outcome
        if isinstance(outcome, Exception):  # never spin on a failing wait
            await self._back_off("waiting for jobs", outcome, stop_wait)
        return []  # woken, cancelled (a slot freed) or failed: claim again

    async def _back_off(self, what: str, exc: Exception, stop_wait: asyncio.Task[Any]) -> None:
        """Pause the claim loop after a failed claim or wait: through an outage
        at the pace ``StoreHealth`` sets, otherwise with capped exponential
        backoff; a stop ends the pause."""
        if isinstance(exc, BackendUnavailable):
            delay = self._health.failed(what, exc)
        else:
            self._failures += 1
            delay = min(BACKOFF_CAP_S, 0.05 * 2**self._failures)
            log.warning(
                "%s failed (%s); again in %.2fs",
                what,
                exc,
                delay,
                exc_info=not isinstance(exc, BackendError),
            )
        await asyncio.wait([stop_wait], timeout=delay)

    @property
    def threads_running(self) -> int:
        """Sync jobs still running in their threads after the grace ended."""
        return sum(not thread.done() for thread in list(self._stuck))

    def _thread_done(self, token: str, thread: concurrent.futures.Future[Any]) -> None:
        """A sync job's thread that outlived the grace ended (in that thread)."""
        self._leases.drop(token)
        self._stuck.discard(thread)

    def _taker(self) -> Taker:
        """Who an idle wait may be handed jobs for: a job in each queue of the
        pools with a free slot for every one of their queues."""
        queues = tuple(
            q for room in self._slots.free() if room.free >= len(room.queues) for q in room.queues
        )
        return Taker(self.id, self._lease_ms, queues)

    async def _drain(self) -> None:
        """Give running jobs the grace period; then release what is still running."""
        if not self._running:
            return
        pending = [running.task for running in self._running.values()]
        _, still = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
        finishing = [r.task for r in self._running.values() if r.task in still and r.finishing]
        if finishing:  # their result is being written: a moment more beats a second run
            _, _ = await asyncio.wait(finishing, timeout=FINISH_WAIT_S)
        leftovers = [r for r in self._running.values() if not r.task.done()]
        if not leftovers:
            return
        for running in leftovers:
            running.context.lost = True  # the job must not write after this point
            running.task.cancel()
        await asyncio.gather(*(r.task for r in leftovers), return_exceptions=True)
        # A sync job's thread cannot be stopped: its job keeps its lease,
        # renewed while the thread runs (``stuck``), and is never released
        # to run elsewhere meanwhile.
        stuck = [r for r in leftovers if r.thread is not None and not r.thread.done()]
        for running in stuck:
            token, thread = running.claimed.token, running.thread
            assert thread is not None
            self._leases.hold(token, running.claimed.job.id)
            thread.add_done_callback(functools.partial(self._thread_done, token))
            self._stuck.add(thread)
        leftovers = [r for r in leftovers if r not in stuck]
        log.warning(
            "grace period over: releasing %d running jobs%s",
            len(leftovers),
            f"; {len(stuck)} sync jobs still run in their threads and keep their leases"
            if stuck
            else "",
        )
        for running in leftovers:
            try:
                await self.app.backend.release(
                    job_id=running.claimed.job.id, token=running.claimed.token
                )
            except BackendError as exc:  # its lease will expire and it comes back
                log.warning("could not release job %s: %s", running.claimed.job.id, exc)

    # -- running one job -----------------------------------------------------------

    def _start(self, claimed: ClaimedJob) -> None:
        job_id, token = claimed.job.id, claimed.token
        loop = asyncio.get_running_loop()
        backend = self.app.backend

        async def write(update: ProgressUpdate) -> bool:
            return await backend.report_progress(job_id=job_id, token=token, update=update)

        context = JobContext(claimed.job, loop=loop, write=write)
        task = loop.create_task(self._execute(claimed, context), name=f"job:{job_id}")
        # Keyed by lease token: the same job id may be claimed again by this
        # worker (cancelled, then retried) while its old run is still ending.
        pool = self._slots.pool_of(claimed.job.queue)
        self._slots.started(pool)
        self._running[token] = _Running(claimed, context, task, pool)
        self._leases.hold(token, job_id)
        task.add_done_callback(functools.partial(self._finished, token))

    def _finished(self, token: str, task: asyncio.Task[None]) -> None:
        self._leases.drop(token)
        entry = self._running.pop(token, None)
        if entry is not None:
            self._slots.ended(entry.pool, finishing=entry.finishing)
        self.processed += 1
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: worker error", task.get_name(), exc_info=task.exception())

    async def _execute(self, claimed: ClaimedJob, context: JobContext) -> None:
        enter_job(context)
        outcome: bytes | Exception
        try:
            if claimed.job.children:
                claimed = await self._with_children(claimed, context)
            outcome = encode(await self._call(claimed))
        except asyncio.CancelledError:
            raise  # shutdown or a lost lease: whoever cancelled decides what to write
        except Exception as exc:  # every job error is recorded; none escapes
            outcome = exc
        await self._settle(claimed, context, outcome)

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

    async def _call(self, claimed: ClaimedJob) -> Any:
        """Run the job's function, within its timeout."""
        job = claimed.job
        task = self.app.get_task(job.task)
        thread: concurrent.futures.Future[Any] | None = None
        if task.sandbox:  # decoded and run in a child process, killed if cancelled
            running: Awaitable[Any] = self._sandbox.run(task, claimed, current_job())
        elif task.is_async:
            args, kwargs = task.signature.decode(claimed.payload)
            running = task.fn(*args, **kwargs)
        else:
            args, kwargs = task.signature.decode(claimed.payload)
            call = functools.partial(task.fn, *args, **kwargs)
            thread = self._threads.submit(contextvars.copy_context().run, call)
            entry = self._running.get(claimed.token)
            if entry is not None:
                entry.thread = thread
            running = asyncio.wrap_future(thread)
        try:
            if job.options.timeout_s is None:
                return await running
            deadline = asyncio.timeout(job.options.timeout_s)
            try:
                async with deadline:
                    return await running
            except TimeoutError as exc:
                if deadline.expired():  # ours, not one raised by the job's own code
                    raise JobTimeout(f"timed out after {job.options.timeout_s}s") from exc
                raise
        finally:
            if thread is not None and not thread.done():
                self._thread_outlives(thread, self._slots.pool_of(job.queue))

    def _thread_outlives(self, thread: concurrent.futures.Future[Any], pool: int) -> None:
        """A sync job ended (timeout, cancel) but its thread cannot be stopped:
        its slot stays taken until the thread returns."""
        self._slots.thread_outlives(pool)
        loop = asyncio.get_running_loop()

        def released(_: concurrent.futures.Future[Any]) -> None:
            self._slots.thread_ended(pool)
            self._slot_free.set()

        def on_loop(done: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to free
                loop.call_soon_threadsafe(released, done)

        thread.add_done_callback(on_loop)

    async def _settle(
        self, claimed: ClaimedJob, context: JobContext, outcome: bytes | Exception
    ) -> None:
        """Write how the attempt ended: complete, retry later, or fail for good."""
        job = claimed.job
        backend = self.app.backend
        running = self._running.get(claimed.token)
        if running is not None:
            running.finishing = True
            self._slots.finishing(running.pool)
            self._slot_free.set()
        finished = True  # completed, or failed for good: a flow's parent hears of it
        state, retention = JobState.COMPLETED, job.options.keep_completed
        if isinstance(outcome, bytes):

            async def write() -> bool:
                return await backend.complete(
                    job_id=job.id, token=claimed.token, result=outcome, retention=retention
                )
        elif isinstance(outcome, RateLimited):
            finished = False
            held = "group" if outcome.group and job.group is not None else "queue"
            log.info(
                "job %s rate limited (%s): back to waiting, its %s held for %.2fs",
                job.id,
                outcome,
                held,
                outcome.delay,
            )
            block_ms = max(1, round(outcome.delay * 1000))

            async def write() -> bool:
                return await backend.release(
                    job_id=job.id,
                    token=claimed.token,
                    block_ms=block_ms,
                    block_group=outcome.group,
                )
        else:
            error = f"{type(outcome).__name__}: {outcome}"
            trace = "".join(traceback.format_exception(outcome))
            retry_in = self._retry_delay(claimed, outcome)
            finished = retry_in is None
            state, retention = JobState.FAILED, job.options.keep_failed
            if retry_in is None:
                log.warning("job %s failed (attempt %d): %s", job.id, job.attempts, error)
            else:
                log.info("job %s retrying in %.2fs: %s", job.id, retry_in, error)

            async def write() -> bool:
                return await backend.fail(
                    job_id=job.id,
                    token=claimed.token,
                    error=error,
                    traceback=trace,
                    retry_in_ms=None if retry_in is None else int(retry_in * 1000),
                    retention=retention,
                )

        written = await self._write_final(job.id, context, write)
        if written and finished:
            self._trimmer.finished(job.task, state, retention)
            if job.parent_id is not None:
                await self._tell_parent(job.id)

    async def _write_final(
        self, job_id: str, context: JobContext, write: Callable[[], Awaitable[bool]]
    ) -> bool:
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
        if is_final(exc):
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
                if await chore() is not False:  # False: it did not need the store
                    self._health.ok()
            except BackendUnavailable as exc:
                self._health.failed(chore.__name__.strip("_"), exc)
            except BackendError as exc:
                log.warning("%s failed: %s", chore.__name__.strip("_"), exc)
            except Exception:  # a chore must never die while the worker claims
                log.exception("%s failed", chore.__name__.strip("_"))

    def _leases_lost(self, lost: list[tuple[str, str]]) -> None:
        """Stop the jobs whose lease is gone (cancelled or reclaimed). A job whose
        outcome is being written is left alone: that write settles it either way."""
        for job_id, token in lost:
            running = self._running.get(token)
            if running is not None and not running.finishing and not running.context.lost:
                log.warning("job %s: lease lost (cancelled or reclaimed); stopping it", job_id)
                running.context.lost = True
                running.task.cancel()

    async def _reclaim(self) -> None:
        """Stall detection in two phases: note the expired leases, and reclaim
        at the next check only those still expired with the same expiry (not
        renewed meanwhile). After the store was unreachable, every lease looks
        expired: nothing is reclaimed until live workers have had a renewal
        interval to renew theirs."""
        backend, settings = self.app.backend, self.settings
        expired = await backend.expired_leases(limit=1000)
        now = time.monotonic()
        previous, self._suspects = self._suspects, {}
        ripe = []
        for job_id, expiry in expired:
            seen = previous.get(job_id)
            if seen is not None and seen[0] == expiry:
                self._suspects[job_id] = seen
                if now - seen[1] >= settings.reclaim_interval_s * 0.9:
                    ripe.append((job_id, expiry))
            else:
                self._suspects[job_id] = (expiry, now)
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
        if result.requeued:
            log.warning("reclaimed %d jobs with expired leases", len(result.requeued))
        if result.failed:
            log.warning("%d jobs failed after stalling too often", len(result.failed))

    def _retentions(self) -> list[tuple[str, JobState, Retention]]:
        """Every task's own retention of completed and failed jobs."""
        return [
            (task.name, state, retention)
            for task in self.app.tasks.values()
            for state, retention in (
                (JobState.COMPLETED, task.options.keep_completed),
                (JobState.FAILED, task.options.keep_failed),
            )
        ]

    async def _trim(self) -> bool:
        return await self._trimmer.tick()

    async def _fire_schedules(self) -> None:
        await self.app.schedules.fire_due()

    async def _apply_outcomes(self) -> None:
        """Outcomes flow children owe their parents that nobody applied yet
        (a child cancelled or stalled out, a worker that died in between)."""
        while await self.app.backend.apply_outcomes(child_ids=None, limit=OUTCOME_BATCH):
            pass

    async def _heartbeat(self) -> None:
        now = await self.app.backend.now_ms()  # the store's clock, as readers compare with
        await self.app.backend.record_worker(
            worker_id=self.id,
            worker=WorkerInfo(
                id=self.id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(self.settings.queues),
                concurrency=self.settings.slots,
                queue_concurrency=dict(self.settings.queue_concurrency),
                active=len(self._running),
                processed=self.processed,
                started_at_ms=self._started_ms,
                last_seen_ms=now,
            ),
        )
