"""The worker's claim loop and its shutdown; what it is and does as a whole
is in the package's docstring (``conveyor.worker``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import socket
import uuid
from typing import Any

from conveyor.app import Conveyor
from conveyor.backends.managing import WorkerCommand
from conveyor.backends.values import ClaimedJob, ProgressUpdate, QueueSlots, Taker, WorkerInfo
from conveyor.context import JobContext
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.settings import WorkerSettings
from conveyor.worker.chores import Chores, retentions
from conveyor.worker.execution import BACKOFF_CAP_S, Attempts, Running
from conveyor.worker.health import StoreHealth
from conveyor.worker.leases import HeldLeases, LeaseKeeper
from conveyor.worker.slots import Slots
from conveyor.worker.trimming import Trimmer

__all__ = ["Worker"]

log = logging.getLogger("conveyor.worker")

FINISH_WAIT_S = 2.0  # at the shutdown deadline, extra time for outcomes being written
IDLE_WAIT_S = 5.0  # an idle wait's longest; jobs that arrive end it at once


class Worker:
    def __init__(self, app: Conveyor, settings: WorkerSettings | None = None) -> None:
        self.app = app
        self.settings = settings or WorkerSettings()
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.processed = 0
        self._running: dict[str, Running] = {}
        self._stopping = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._claiming = asyncio.Event()  # clear while paused
        self._claiming.set()
        self._pausing = asyncio.Event()  # set while paused: ends an idle wait
        self._slots = Slots(self.settings.pools)
        self._started_ms = 0
        self._leases = HeldLeases()
        self._stuck: set[concurrent.futures.Future[Any]] = set()  # threads past the grace
        self._failures = 0  # claims and waits failed in a row (not by an outage)
        self._lease_ms = int(self.settings.lease_s * 1000)
        self._health = StoreHealth()
        self._trimmer = Trimmer(app.backend, lambda: retentions(app.tasks.values()))
        self._attempts = Attempts(
            app,
            slots=self._slots,
            wake=self._slot_free.set,
            health=self._health,
            trimmer=self._trimmer,
            size=self.settings.slots,
        )
        self._chores = Chores(
            app,
            self.settings,
            health=self._health,
            trimmer=self._trimmer,
            describe=self._describe,
            obey=self.command,
        )

    # -- control -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming and begin a graceful shutdown (safe to call more than once)."""
        if not self._stopping.is_set():
            log.info("worker %s stopping: no new jobs, %d running", self.id, len(self._running))
        self._stopping.set()
        self._slot_free.set()

    def pause(self) -> None:
        """Stop claiming jobs, keeping those running and their leases, until
        ``resume()``; an idle wait ends at once (a job it was handed just then
        runs: it was claimed before the pause). Also by SIGUSR1 to ``conveyor
        worker``, or ``conveyor workers pause ID`` through the store (taken at
        the next heartbeat). Its heartbeat says it is paused."""
        if self._claiming.is_set():
            log.info("worker %s paused: no new jobs, %d running", self.id, len(self._running))
        self._claiming.clear()
        self._pausing.set()

    def resume(self) -> None:
        """Claim jobs again after ``pause()`` (SIGUSR2, ``conveyor workers resume ID``)."""
        if not self._claiming.is_set():
            log.info("worker %s resumed", self.id)
        self._pausing.clear()
        self._claiming.set()

    @property
    def paused(self) -> bool:
        return not self._claiming.is_set()

    def command(self, command: WorkerCommand) -> None:
        """Follow a command the store had for this worker (``record_worker``)."""
        if command == "pause":
            self.pause()
        else:
            self.resume()

    @property
    def active(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Run until ``stop()``; then drain and return. A store that does not
        answer at the start is waited for, as through any outage."""
        settings = self.settings
        keeper = LeaseKeeper(
            self.app.backend,
            self._leases,
            interval_s=settings.renew_interval_s,
            lease_ms=self._lease_ms,
            on_lost=self._leases_lost,
        )
        chores: list[asyncio.Task[None]] = []
        stop_wait = asyncio.create_task(self._stopping.wait())
        try:
            if await self._come_up(stop_wait):
                log.info(
                    "worker %s started: %s",
                    self.id,
                    ", ".join(f"{'+'.join(q)} {slots} slots" for q, slots in settings.pools),
                )
                chores = self._chores.start()
                keeper.start()
                await self._claim_loop(stop_wait)
        finally:
            await self._drain()
            await self._trimmer.close()
            await self._attempts.close()  # kills the sandboxes' process groups
            if self._stuck:  # their leases are renewed until their threads end
                keeper.linger()
            else:
                await asyncio.to_thread(keeper.stop)
            stop_wait.cancel()
            for chore in chores:
                chore.cancel()
            await asyncio.gather(stop_wait, *chores, return_exceptions=True)
            try:
                await self.app.backend.record_worker(worker=None, worker_id=self.id)
            except BackendError as exc:
                log.warning("could not remove worker record: %s", exc)
            log.info("worker %s stopped after %d jobs", self.id, self.processed)

    async def _come_up(self, stop_wait: asyncio.Task[Any]) -> bool:
        """Connect, note the start on the store's clock, write the first
        heartbeat and the schedules declared in code; through an outage,
        again at ``StoreHealth``'s pace. False: stopped before the store answered."""
        while not self._stopping.is_set():
            try:
                await self.app.connect()
                self._started_ms = await self.app.backend.now_ms()
                await self._chores.heartbeat()
                await self.app.schedules.save_declared()
                self._health.ok()
                return True
            except BackendUnavailable as exc:
                await asyncio.wait([stop_wait], timeout=self._health.failed("starting", exc))
        return False

    async def _claim_loop(self, stop_wait: asyncio.Task[Any]) -> None:
        """Claim into the free slots until stopped; after a claim that took
        fewer jobs than it had room for (it found no more ready), wait: jobs
        that arrive meanwhile end the wait at once, and may come with it."""
        handed: list[ClaimedJob] = []  # jobs a wait was handed, claimed for us
        try:
            while not self._stopping.is_set():
                if not handed and not self._claiming.is_set():  # paused
                    await self._until_resumed(stop_wait)
                    continue
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
                short = len(claimed) < sum(room.free for room in rooms)
                if short and self._claiming.is_set():
                    handed = await self._wait(rooms, stop_wait)
        finally:
            for job in handed:  # handed as the worker stopped: they get the grace too
                self._start(job)

    async def _until_resumed(self, stop_wait: asyncio.Task[Any]) -> None:
        """While paused: first take the jobs a past idle wait was handed
        meanwhile (a claim with no room gets only those), which run, then
        wait for a resume or a stop."""
        try:
            for job in await self.app.backend.claim(
                slots=[], worker_id=self.id, lease_ms=self._lease_ms
            ):
                self._start(job)
        except Exception as exc:  # the store is away: their leases bring them back
            log.warning("while pausing, could not take handed jobs: %s", exc)
        resumed = asyncio.create_task(self._claiming.wait())
        await asyncio.wait([stop_wait, resumed], return_when=asyncio.FIRST_COMPLETED)
        resumed.cancel()
        await asyncio.gather(resumed, return_exceptions=True)

    async def _wait(
        self, rooms: list[QueueSlots], stop_wait: asyncio.Task[Any]
    ) -> list[ClaimedJob]:
        """Wait for jobs in ``rooms``' queues, for a stop, a pause, or (when a
        pool is full) for a slot to free; the jobs the wait was handed, if any."""
        idle = [queue for room in rooms for queue in room.queues]
        waiter = asyncio.create_task(
            self.app.backend.wait_for_jobs(queues=idle, timeout_s=IDLE_WAIT_S, taker=self._taker())
        )
        waits = [waiter, stop_wait, asyncio.create_task(self._pausing.wait())]
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

    # -- running jobs -------------------------------------------------------------

    def _start(self, claimed: ClaimedJob) -> None:
        job_id, token = claimed.job.id, claimed.token
        loop = asyncio.get_running_loop()
        backend = self.app.backend

        async def write(update: ProgressUpdate) -> bool:
            return await backend.report_progress(job_id=job_id, token=token, update=update)

        context = JobContext(claimed.job, loop=loop, write=write)
        pool = self._slots.pool_of(claimed.job.queue)
        self._slots.started(pool)
        running = Running(claimed, context, pool)
        running.task = loop.create_task(self._attempts.run(running), name=f"job:{job_id}")
        # Keyed by lease token: the same job id may be claimed again by this
        # worker (cancelled, then retried) while its old run is still ending.
        self._running[token] = running
        self._leases.hold(token, job_id)
        running.task.add_done_callback(functools.partial(self._finished, token))

    def _finished(self, token: str, task: asyncio.Task[None]) -> None:
        self._leases.drop(token)
        entry = self._running.pop(token, None)
        if entry is not None:
            self._slots.ended(entry.pool, finishing=entry.finishing)
        self.processed += 1
        self._slot_free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: worker error", task.get_name(), exc_info=task.exception())

    def _leases_lost(self, lost: list[tuple[str, str]]) -> None:
        """Stop the jobs whose lease is gone (cancelled or reclaimed). A job whose
        outcome is being written is left alone: that write settles it either way."""
        for job_id, token in lost:
            running = self._running.get(token)
            if running is not None and not running.finishing and not running.context.lost:
                log.warning("job %s: lease lost (cancelled or reclaimed); stopping it", job_id)
                running.context.lost = True
                running.task.cancel()

    def _describe(self, now_ms: int) -> WorkerInfo:
        """This worker's record, as its heartbeat writes it."""
        settings = self.settings
        return WorkerInfo(
            id=self.id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=list(settings.queues),
            concurrency=settings.slots,
            queue_concurrency=dict(settings.queue_concurrency),
            active=len(self._running),
            processed=self.processed,
            started_at_ms=self._started_ms,
            last_seen_ms=now_ms,
            paused=self.paused,
        )
