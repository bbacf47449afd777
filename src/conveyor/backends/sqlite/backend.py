"""The embedded SQLite job store: the default, for one host.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``;
``?synchronous=full`` trades speed for durability against power loss (the
default ``normal`` in WAL mode survives any process crash, which is what
at-least-once delivery needs).

Each operation of the contract is one function run inside one transaction on
the writer thread, or on a reader thread's connection for reads (see
``connection.py``: the one writer per process, group commit, the limits of
one host). Idle workers poll ``PRAGMA data_version`` on a connection of
their own, well under 1 % of a core each (``waiting.py``); writes from the
same process that may free work wake them at once.

``SQLiteBackend`` is the contract's face and holds the store's state: the
writer, readers and poll connection, the clock, the wake-up event, and what
the last claim of each set of queues saw. Each method hands its work to a
module named for what it does: ``adding`` (enqueue), ``claims``, ``waiting``,
``finishing`` (and ``flows``, children reaching their parents), ``reclaim``
(leases), ``limits``, ``admin``, ``schedules`` and ``reading``. A transaction
is a function of the connection it runs on, given to ``write`` or ``read``
with its arguments; the claim, the idle wait and the batched retry, which
use more of the state, take the backend as a ``state.State``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import msgspec

from conveyor.backends.base import Backend
from conveyor.backends.managing import RETRIED, WorkerCommand
from conveyor.backends.sqlite import (
    adding,
    admin,
    changing,
    claims,
    connection,
    draining,
    events,
    finishing,
    limits,
    reading,
    reclaim,
    schedules,
    stats,
    waiting,
)
from conveyor.backends.sqlite.state import LastClaim
from conveyor.backends.values import (
    ClaimedJob,
    JobChange,
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
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.events import EventPage, EventSettings
from conveyor.job import ChildOutcome, Job, JobState, LogEntry, Retention
from conveyor.limits import Limits, Rate, with_holds
from conveyor.stats import Stats

__all__ = ["SQLiteBackend"]

P = ParamSpec("P")
T = TypeVar("T")


class SQLiteBackend(Backend):
    """The SQLite store, and the state its modules share: ``write``, ``read``,
    ``poll_connection`` and ``data_version`` reach the connections; ``wakeup``
    ends this process's idle waits; ``last_work`` is when work was last seen
    (``time.monotonic``); ``last_claim`` is what the last claim of each set of
    queues saw (workers of one app share this backend)."""

    def __init__(
        self, url: str, *, clock: Clock | None = None, events: EventSettings | None = None
    ) -> None:
        super().__init__(clock=clock, events=events)
        self.url = url
        self.path, self._synchronous = connection.parse_url(url)
        self._writer: connection.Writer | None = None
        self._readers: connection.Readers | None = None
        self._poll: sqlite3.Connection | None = None
        self.wakeup = asyncio.Event()
        self.last_work = 0.0
        self.last_claim: dict[tuple[str, ...], LastClaim] = {}

    # -- lifecycle and the connections -----------------------------------------

    async def connect(self) -> None:
        self._follow_loop()
        if self._writer is not None:
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await asyncio.to_thread(connection.open_writer, self.path, self._synchronous)
        except sqlite3.Error as exc:
            raise connection.map_error(exc) from exc
        except OSError as exc:  # a directory we may not enter or create
            raise BackendError(f"sqlite: cannot open {self.path}: {exc.strerror}") from None
        self._writer = connection.Writer(conn)
        self._readers = connection.Readers(self.path)
        self._poll = connection.connect(self.path)
        await self.write(events.configure, self.events)

    async def close(self) -> None:
        self._follow_loop()
        writer, readers, poll = self._writer, self._readers, self._poll
        self._writer = self._readers = self._poll = None
        if writer is not None:
            await asyncio.to_thread(writer.stop)
        if readers is not None:
            await asyncio.to_thread(readers.close)
        if poll is not None:
            poll.close()
        self._release_loop()

    def _leave_loop(self, old: asyncio.AbstractEventLoop) -> None:
        # The writer thread, readers and poll connection serve any loop; the
        # wake-up event and writes queued on ``old`` (never sent) do not.
        self.wakeup = asyncio.Event()
        if self._writer is not None:
            self._writer.drop_unsent()

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` in one transaction on the writer thread."""
        self._follow_loop()
        if self._writer is None:
            await self.connect()
        assert self._writer is not None
        return await self._writer.submit(lambda conn: fn(conn, *args, **kwargs))

    async def write_then_wake(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``write``, then end this process's idle waits: for a write that
        may leave a job ready to claim."""
        done = await self.write(fn, *args, **kwargs)
        self.wakeup.set()
        return done

    async def read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` on a reader thread's connection."""
        self._follow_loop()
        if self._readers is None:
            await self.connect()
        assert self._readers is not None
        return await self._readers.run(lambda conn: fn(conn, *args, **kwargs))

    async def poll_connection(self) -> sqlite3.Connection:
        """The connection idle waits poll, on the event loop's thread."""
        self._follow_loop()
        if self._poll is None:
            await self.connect()
        assert self._poll is not None
        return self._poll

    def data_version(self) -> int | None:
        """Changes whenever another connection (our writer too) commits;
        None when not connected."""
        if self._poll is None:
            return None
        version: int = self._poll.execute("PRAGMA data_version").fetchone()[0]
        return version

    # -- producers -------------------------------------------------------------

    async def enqueue(self, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        if not jobs:
            return []
        return await self.write_then_wake(adding.add, jobs, self.clock.now_ms())

    # -- workers ---------------------------------------------------------------

    async def claim(
        self, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        return await claims.claim(self, slots=slots, worker_id=worker_id, lease_ms=lease_ms)

    async def wait_for_jobs(
        self, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
    ) -> list[ClaimedJob]:
        """Hands no jobs over: a claim costs no round trip here."""
        await waiting.wait(self, queues, timeout_s)
        return []

    def extend_leases_blocking(
        self, *, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[tuple[str, str]]:
        if not leases:
            return []
        if self._writer is None:
            raise BackendError("sqlite backend is not connected")

        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return reclaim.extend_leases(conn, self.clock, leases, lease_ms)

        try:
            return self._writer.run_blocking(op, reclaim.EXTEND_TIMEOUT_S)
        except TimeoutError as exc:
            raise BackendUnavailable("sqlite: lease renewal timed out") from exc

    async def complete(
        self,
        *,
        job_id: str,
        token: str,
        result: bytes,
        retention: Retention,
        bucket: str | None = None,
    ) -> bool:
        return await self.write(
            finishing.complete,
            self.clock,
            job_id=job_id,
            token=token,
            result=result,
            keep=finishing.own_bucket(bucket),
        )

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
        return await self.write(
            finishing.fail,
            self.clock,
            job_id=job_id,
            token=token,
            error=error,
            traceback=traceback,
            retry_in_ms=retry_in_ms,
            keep=finishing.own_bucket(bucket),
        )

    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        return await self.write_then_wake(
            finishing.release,
            self.clock,
            job_id=job_id,
            token=token,
            block_ms=block_ms,
            block_group=block_group,
        )

    async def apply_outcomes(self, *, child_ids: Sequence[str] | None, limit: int) -> int:
        return 0  # applied inside each child's own transaction (flows.py)

    async def report_progress(self, *, job_id: str, token: str, update: ProgressUpdate) -> bool:
        return await self.write(
            finishing.report_progress, self.clock, job_id=job_id, token=token, update=update
        )

    async def expired_leases(self, *, limit: int) -> list[tuple[str, int]]:
        return await self.read(reclaim.expired_leases, self.clock, limit=limit)

    async def reclaim_expired(
        self, *, max_stalls: int, limit: int, suspects: Sequence[tuple[str, int]] | None = None
    ) -> ReclaimResult:
        result = await self.write(
            reclaim.reclaim_expired,
            self.clock,
            max_stalls=max_stalls,
            limit=limit,
            suspects=suspects,
        )
        if result.requeued:
            self.wakeup.set()
        return result

    async def record_worker(
        self, *, worker: WorkerInfo | None, worker_id: str
    ) -> WorkerCommand | None:
        return await self.write(admin.record_worker, worker=worker, worker_id=worker_id)

    async def command_worker(self, *, worker_id: str, command: WorkerCommand) -> bool:
        return await self.write(admin.command_worker, worker_id=worker_id, command=command)

    async def trim_finished(
        self, *, task: str, state: JobState, retention: Retention, limit: int
    ) -> int | None:
        return await self.write(
            admin.trim_finished,
            self.clock,
            task=task,
            state=state,
            retention=retention,
            limit=limit,
        )

    # -- inspection ------------------------------------------------------------

    async def get_job(self, *, job_id: str) -> Job | None:
        return await self.read(reading.get_job, job_id=job_id)

    async def children_of(self, *, job_id: str, limit: int) -> list[Job]:
        return await self.read(reading.children_of, job_id=job_id, limit=limit)

    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        return await self.read(reading.get_logs, job_id=job_id)

    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        return await self.read(
            reading.list_jobs, queue=queue, state=state, offset=offset, limit=limit
        )

    async def queues(self) -> list[QueueInfo]:
        return await self.read(reading.queues)

    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        return await self.read(reading.child_outcomes, parent_id=parent_id)

    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        since = self.clock.now_ms() - seen_within_ms
        return await self.read(reading.workers, seen_since_ms=since)

    async def now_ms(self) -> int:
        return self.clock.now_ms()

    # -- administration ----------------------------------------------------------

    async def set_paused(self, *, queue: str, paused: bool) -> None:
        await self.write_then_wake(admin.set_paused, queue=queue, paused=paused)

    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        await self.write_then_wake(
            limits.set_limits, queue=queue, group=group, max_active=max_active, rate=rate
        )

    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        def read(conn: sqlite3.Connection) -> dict[str | None, Limits]:
            held = claims.held(conn, self.clock, queue=queue)
            return with_holds(limits.get_limits(conn, queue=queue), held)

        return await self.read(read)

    async def retry_jobs(
        self,
        *,
        job_ids: Sequence[str] | None,
        queue: str | None,
        states: Sequence[JobState] = RETRIED,
    ) -> int:
        return await admin.retry_jobs(self, job_ids=job_ids, queue=queue, states=states)

    async def cancel(self, *, job_id: str) -> bool:
        return await self.write(admin.cancel, self.clock, job_id=job_id)

    async def remove(self, *, job_id: str) -> bool:
        return await self.write(admin.remove, self.clock, job_id=job_id)

    async def promote(self, *, job_id: str) -> bool:
        return await self.write_then_wake(admin.promote, self.clock, job_id=job_id)

    async def change_job(self, *, job_id: str, change: JobChange) -> bool | None:
        return await self.write_then_wake(changing.change, self.clock, job_id=job_id, change=change)

    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        return await draining.clean(
            self, queue=queue, state=state, older_than_ms=older_than_ms, keep=keep, limit=limit
        )

    async def drain(self, *, queue: str, delayed: bool) -> int:
        return await draining.drain(self, queue=queue, delayed=delayed)

    async def obliterate(self, *, queue: str, force: bool) -> int:
        removed = await draining.obliterate(self, queue=queue, force=force)
        self.wakeup.set()
        return removed

    async def dedup_key_owner(self, *, key: str) -> str | None:
        return await self.read(admin.dedup_key_owner, self.clock, key=key)

    async def release_dedup_key(self, *, key: str) -> bool:
        return await self.write(admin.release_dedup_key, self.clock, key=key)

    # -- schedules ---------------------------------------------------------------

    async def save_schedule(self, *, schedule: Schedule) -> None:
        await self.write(schedules.save_schedule, schedule=schedule)

    async def remove_schedule(self, *, schedule_id: str) -> bool:
        return await self.write(schedules.remove_schedule, schedule_id=schedule_id)

    async def schedules(self) -> list[tuple[Schedule, Fired]]:
        return await self.read(schedules.schedules)

    async def mark_tick(
        self, *, schedule_id: str, tick_ms: int, fired: NewJob | None = None
    ) -> None:
        await self.write(schedules.mark_tick, schedule_id=schedule_id, tick_ms=tick_ms, fired=fired)

    # -- events ----------------------------------------------------------------

    async def read_events(self, *, after: str | None, limit: int) -> EventPage:
        return await self.read(events.page, after, limit)

    async def trim_history(self) -> None:
        await self.write(events.trim)
        await self.write(stats.trim, self.clock.now_ms())

    async def last_event_id(self) -> str | None:
        return await self.read(events.last_id)

    async def wait_for_events(self, *, after: str | None, timeout_s: float) -> None:
        async def caught_up() -> bool:
            return await self.last_event_id() == after

        await events.wait(self, timeout_s, caught_up)

    # -- statistics --------------------------------------------------------------

    async def read_stats(
        self, *, since_ms: int, until_ms: int, queue: str | None, task: str | None
    ) -> dict[int, Stats]:
        return await self.read(stats.minutes, since_ms, until_ms, queue, task)

    async def totals(self) -> dict[str, Stats]:
        return await self.read(stats.totals)
