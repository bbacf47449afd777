"""The job store contract, in queue terms.

The public layer (app, task, worker) validates input, decides policy (whether
a failure is retried and after how long, what a timeout means) and then calls
**one** method here per state change. A backend holds storage, not policy:
anything the SQLite and Redis backends would both have to decide lives above
this line.

Every method is keyword-only after ``self``. Each docstring states what is
atomic and who must own the job. "Owning" a job means holding its current
lease token: ``claim`` hands one out, and every later write about that run
(``complete``, ``fail``, ``release``, ``extend_leases_blocking``, ``report_progress``)
is applied only if the token is still current. A stale token means the job was
reclaimed or cancelled meanwhile; the write is dropped and ``False`` returned.

Time: backends take "now" from their ``Clock`` (see ``conveyor.clock``), never
from the caller, so delays, leases and backoff all run on one clock.

Event loops: connections belong to the loop that opened them, and an app may
be used from one loop after another (``asyncio.run`` twice, pytest's loop per
test). ``Backend._follow_loop`` decides, for every backend, when a call is on
a new loop; each backend calls it from the few gates all its operations pass
(connecting, closing, sending to the store) and says in ``_leave_loop`` what
it drops and makes anew.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Sequence

from conveyor.backends.history import History
from conveyor.backends.managing import Managing, WorkerCommand
from conveyor.backends.rows import UnreadableRecord
from conveyor.backends.values import (
    ClaimedJob,
    NewJob,
    ProgressUpdate,
    QueueInfo,
    QueueSlots,
    ReclaimResult,
    Taker,
    WorkerInfo,
)
from conveyor.clock import Clock
from conveyor.cron import Fired, Schedule
from conveyor.errors import ConfigurationError
from conveyor.events import EventSettings
from conveyor.job import ChildOutcome, Job, JobState, LogEntry, Retention

log = logging.getLogger("conveyor.store")

__all__ = ["KEEP_ALL", "PROMOTE_BATCH", "Backend", "stalled_message", "unreadable"]


def stalled_message(stalls: int, max_stalls: int) -> str:
    """The line a reclaimed job gets in its log (its stall record). The Redis
    scripts write the same text (reclaim-8.lua); the conformance suite checks."""
    if stalls > max_stalls:
        return f"stalled: lease expired; failed after {stalls} stalls (max_stalls {max_stalls})"
    return f"stalled: lease expired; back to waiting (stall {stalls} of {max_stalls})"


KEEP_ALL = Retention(max_count=None, max_age_s=None)
PROMOTE_BATCH = 1000  # due delayed jobs a claim promotes at most, on every store


def unreadable(exc: UnreadableRecord) -> str:
    """The error of a job claimed with a record that cannot be read (written
    by hand, by another version, by a bug): it fails on its own, as
    ``failed`` with this error, and the rest of its claim runs."""
    log.warning("job %s: %s; failed on its own", exc.job_id, exc.reason)
    return exc.reason


class Backend(History, Managing, abc.ABC):
    """Base of every job store. Subclasses implement the abstract operations."""

    url: str

    def __init__(self, *, clock: Clock | None = None, events: EventSettings | None = None) -> None:
        self.clock = clock or Clock()
        self.events = events or EventSettings()  # whether this app's changes write events
        # Conditions found at connect that put jobs at risk (e.g. Redis eviction);
        # logged once and shown by ``conveyor info``.
        self.warnings: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the one connections belong to

    # -- lifecycle -------------------------------------------------------------

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and bring the schema up to date. Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection. Idempotent; on any loop (see ``_follow_loop``)."""

    def _follow_loop(self) -> None:
        """Make the backend's loop-bound parts those of the running loop.

        Streams, futures, events and tasks belong to the event loop they were
        made on. When a call comes on another loop than the last one, the old
        loop is usually closed (``asyncio.run`` ended): nothing can be awaited
        there, so ``_leave_loop`` drops its parts without it and makes new
        ones here; what no loop owns (threads, blocking connections) stays.
        One comparison otherwise: gates of every operation call this.

        One loop at a time: while the old loop runs (in another thread: a
        worker, a ``SyncConveyor``), a call from another loop would pull the
        connections from under it, and fails instead.
        """
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        old = self._loop
        if old is not None and old.is_running():
            raise ConfigurationError(
                "this app is in use on an event loop running in another thread; an app"
                " is used from one event loop at a time: give each thread its own"
                " Conveyor(url), or close the app there first"
            )
        self._loop = loop
        if old is not None:
            self._leave_loop(old)

    @abc.abstractmethod
    def _leave_loop(self, old: asyncio.AbstractEventLoop) -> None:
        """Drop, without awaiting, what belongs to ``old`` (closed, left idle,
        or just closed by ``close``) and make it anew, so that the next
        operation works on the loop it comes on."""

    def _release_loop(self) -> None:
        """The end of ``close``: with nothing left open on this loop, the next
        call may come from any loop, even while this one runs on."""
        if self._loop is not None:
            old, self._loop = self._loop, None
            self._leave_loop(old)

    # -- producers -------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        """Add ``jobs`` in one atomic step, as if one after the other: all are
        added or none. Returns per job ``(id, created)``: the id of the job
        that stands for it and whether this call created that job.

        A job whose id is already in the store is not added again (the stored
        job is left as it is, and no dedup key is looked at). Then its
        ``dedup_key``, if any: with ``dedup_ttl_ms`` (throttle), while the
        key's window is open the job is not added and the result names the
        job that opened the window (even if that job was removed since: the
        window is a time span); otherwise the job is added and opens a new
        window of ``dedup_ttl_ms`` from now. With ``debounce``, the job
        that last used the key is removed (with its logs) if it is still
        ``delayed`` or ``waiting`` and has never started, and the job is
        added. A single debounced job racing another enqueue with its key
        may instead count as enqueued just before that one and so replaced
        at once: not added, its result naming the job that replaced it. Jobs
        with a delay or ``run_at`` in the future start ``delayed``, others
        ``waiting``.
        """

    # -- workers ---------------------------------------------------------------

    @abc.abstractmethod
    async def claim(
        self, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        """Lease ready jobs from unpaused queues, atomically: up to each
        ``QueueSlots``' ``free`` from its queues.

        First promotes due ``delayed`` jobs (a bounded batch; on Redis a
        claim woken by an enqueue that named its queue's only waiting job may
        take that job alone and leave promotion to the next claim), then takes
        ``waiting`` jobs, moving each to ``active`` with a fresh token,
        ``attempts + 1`` and a lease expiring ``lease_ms`` from now. Within
        a queue, jobs without a group go by priority (higher first), then
        LIFO jobs (newest enqueued first), then FIFO jobs in the order they
        became ready (enqueued, or fell due: a delay or a retry's backoff)
        and then by enqueue order (on Redis: by id within a ms, which follows
        enqueue order for generated ids); in a queue with groups, the
        groups and the jobs without one take turns (``conveyor.limits``;
        ``claiming`` decides the order for every store), each in that order.
        Across the queues of one ``QueueSlots``, each queue's next job
        competes by priority, then that order.

        No claim passes a limit (``set_limits``) of a queue or a group: its
        ``max_active``, its ``rate`` (every start is logged in the same step)
        or a block set by ``release(block_ms=...)``. A job left waiting by a
        limit spends no attempt.
        """

    @abc.abstractmethod
    async def wait_for_jobs(
        self, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
    ) -> list[ClaimedJob]:
        """Return when ``queues`` may have ready jobs, or after ``timeout_s``.

        Called after a claim that took fewer jobs than it had room for. May
        return early for no reason; callers then claim and wait again. Must
        not busy-poll: an idle worker costs close to nothing, and a queue held
        back by a rate limit is looked at again when its window frees a slot,
        not before. Cancelling it (a worker whose full queue got a free slot)
        ends the wait at once and leaves every connection fit for use.

        With a ``taker``, a store may hand the wait jobs that become ready in
        ``taker.queues`` meanwhile, at most one per queue, already claimed for
        ``taker.worker_id`` exactly as ``claim`` would (same limits, lease,
        attempt), saving the worker a claim's round trip: they are returned,
        and the caller runs them. A cancelled wait releases any job handed to
        it. Otherwise it returns ``[]``.
        """

    @abc.abstractmethod
    def extend_leases_blocking(
        self, *, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[tuple[str, str]]:
        """Extend each held ``(job_id, token)`` lease to now + ``lease_ms``, atomically.

        Returns the ``(job_id, token)`` pairs whose token is no longer current
        (lost leases); one job id may appear with an old and a current token.
        Blocking, for a thread of its own while the event loop may be busy: job
        code that blocks the loop or hogs the CPU must not let its lease lapse.
        Called from one thread at a time, never from the loop, and only while
        connected. Raises ``BackendUnavailable`` like the rest.
        """

    @abc.abstractmethod
    async def complete(
        self,
        *,
        job_id: str,
        token: str,
        result: bytes,
        retention: Retention,
        bucket: str | None = None,
    ) -> bool:
        """Move an owned job to ``completed`` with ``result`` (JSON), atomically.

        A store may note the job for ``trim_finished`` when ``retention`` is
        limited, in ``bucket`` (``job.retention_bucket``: None or the task's
        name for its task's own retention, else a per-job one's); trimming
        itself is ``trim_finished``'s, never the completion's. Returns
        ``False`` (and changes nothing) if ``token`` is not current.
        """

    @abc.abstractmethod
    async def fail(
        self,
        *,
        job_id: str,
        token: str,
        error: str,
        traceback: str | None,
        retry_in_ms: int | None,
        retention: Retention,
        bucket: str | None = None,
    ) -> bool:
        """Record a failed attempt of an owned job, atomically.

        With ``retry_in_ms`` set the job goes to ``delayed`` until now plus
        that; with ``None`` it goes to ``failed`` (noted for ``trim_finished``
        in ``bucket`` as ``complete`` does). Returns ``False`` if ``token``
        is not current.
        """

    @abc.abstractmethod
    async def trim_finished(
        self, *, task: str, state: JobState, retention: Retention, limit: int
    ) -> int | None:
        """Delete up to ``limit`` jobs of ``task`` in the finished ``state``
        beyond ``retention``: those that finished more than ``max_age_s`` ago,
        then the oldest beyond the newest ``max_count``, with their logs.
        ``task`` is a bucket (``job.retention_bucket``): a task's name trims
        the jobs that kept their task's retention, a per-job bucket only
        the jobs finished in it.

        Each call is one atomic step per batch (one statement or script for
        the deletion), and at most one runs per ``(task, state)`` at a time
        across every process of the store: a call that finds another under
        way changes nothing and returns ``None``. Else returns how many were
        deleted (``limit``: call again, there may be more).
        """

    @abc.abstractmethod
    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        """Give an owned job back to ``waiting`` (shutdown, or the job said it
        was rate limited), atomically.

        The attempt is not counted and it is not a stall. With ``block_ms``,
        in the same step, claims take no job of the job's queue (with
        ``block_group``, of its group, if it has one) until now + ``block_ms``
        (a later block already set stays). ``False`` if stale.
        """

    @abc.abstractmethod
    async def apply_outcomes(self, *, child_ids: Sequence[str] | None, limit: int) -> int:
        """Apply the recorded outcomes of finished flow children to their
        parents: those of ``child_ids``, or (None) up to ``limit`` of any.

        Every transition that finishes a flow's child (complete, fail for
        good, cancel, expire, stall out, remove unfinished) either applies its
        outcome to the parent in the same atomic step, or records it in that
        step for this method; each outcome is applied once, atomically with
        the parent's change (``conveyor.flow`` gives the policies). Returns
        how many were applied here; 0 where transitions apply them inline.
        """

    @abc.abstractmethod
    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        """The outcomes applied to ``parent_id`` so far, one per child."""

    @abc.abstractmethod
    async def report_progress(self, *, job_id: str, token: str, update: ProgressUpdate) -> bool:
        """Store progress, its detail and log lines of an owned job, atomically."""

    @abc.abstractmethod
    async def expired_leases(self, *, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` active jobs whose lease has expired, as ``(job_id,
        lease_expires_ms)``, oldest first (within each queue on Redis): the
        first phase of stall detection."""

    @abc.abstractmethod
    async def reclaim_expired(
        self, *, max_stalls: int, limit: int, suspects: Sequence[tuple[str, int]] | None = None
    ) -> ReclaimResult:
        """Put up to ``limit`` jobs whose lease expired back to ``waiting``, atomically.

        Each counts a stall and gets a ``stalled: ...`` line in its log; a job
        that has stalled more than ``max_stalls`` times goes to ``failed`` with
        error ``stalled`` instead. With ``suspects`` (from ``expired_leases``),
        only those jobs are reclaimed, and only if their lease still has the
        expiry seen then: a lease renewed meanwhile is left alone.
        """

    @abc.abstractmethod
    async def record_worker(
        self, *, worker: WorkerInfo | None, worker_id: str
    ) -> WorkerCommand | None:
        """Upsert a worker's heartbeat, or remove it when ``worker`` is None;
        atomically with that, take the command ``command_worker`` left for it
        (it is then gone), if any."""

    # -- inspection ------------------------------------------------------------

    @abc.abstractmethod
    async def get_job(self, *, job_id: str) -> Job | None:
        """One job as stored now, or ``None``."""

    @abc.abstractmethod
    async def children_of(self, *, job_id: str, limit: int) -> list[Job]:
        """The first ``limit`` jobs a flow's parent waits or waited for that
        are still stored, in the order its flow gave them; [] for a job that
        is no parent."""

    @abc.abstractmethod
    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        """The log lines a job wrote, oldest first."""

    @abc.abstractmethod
    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        """Jobs in ``state`` (optionally one queue), in the order they would run
        (waiting), are due (delayed) or finished (newest first)."""

    @abc.abstractmethod
    async def queues(self) -> list[QueueInfo]:
        """Every known queue with its paused flag and per-state counts."""

    # -- schedules ---------------------------------------------------------------

    @abc.abstractmethod
    async def save_schedule(self, *, schedule: Schedule) -> None:
        """Add a schedule, or replace the one with its id (its last tick stays)."""

    @abc.abstractmethod
    async def remove_schedule(self, *, schedule_id: str) -> bool:
        """Delete a schedule. ``False`` if there was none."""

    @abc.abstractmethod
    async def schedules(self) -> list[tuple[Schedule, Fired]]:
        """Every schedule, by id, with its ticks: the last fired (epoch ms) or
        None, and how many it fired."""

    @abc.abstractmethod
    async def mark_tick(
        self, *, schedule_id: str, tick_ms: int, fired: NewJob | None = None
    ) -> None:
        """Record that ``tick_ms`` fired, atomically with its count and event;
        an older tick never replaces a newer one (nor counts). ``fired``: the
        tick's job, just enqueued, for the ``tick`` event and the count
        (None: the tick is noted without firing or counting, as a resume does)."""

    @abc.abstractmethod
    async def now_ms(self) -> int:
        """The store's clock (plus the test offset), in epoch ms."""

    @abc.abstractmethod
    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        """Workers whose last heartbeat is within ``seen_within_ms``."""

    async def memory_bytes(self) -> tuple[int | None, int | None]:
        """The memory the store's server uses and its limit, in bytes (None:
        not known, or no limit): Redis's ``INFO memory``; none for SQLite."""
        return None, None
