"""The Redis job store: for more than one machine.

URL: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or
``unix:///path/to/socket``; ``?namespace=NAME`` picks the key namespace
(default ``conveyor``; see ``keys.py`` for the layout and why one namespace
is one hash tag); ``?cluster=true`` connects to a Redis Cluster through any
of its nodes.

Every state change is one Lua script (``scripts/``), and every script takes
"now" from the server's ``TIME`` plus the clock's test offset, so workers'
clocks never decide anything. Where a script must touch jobs chosen by what
is stored (claims, promotion, reclaiming, trimming), the caller first peeks
candidate ids with a read-only command and the script then re-checks each
candidate atomically: a job taken meanwhile by another worker is skipped, so
a stale peek costs a retry, never a double claim. That keeps every key in
``KEYS`` (Cluster-safe) without reading in one round trip and acting on the
read in the next.

Idle workers block on a per-queue marker list (``BLPOP``) and wake when an
enqueue, a promotion or a release pushes to it; an enqueue may also hand a
job straight to an idle wait (``waiting.py``). Groups and flows keep every
key static per queue: grouped waiting jobs sit in one lexically ordered set
per queue (see ``lib.lua``), and a finished flow child's outcome is written
to an outbox by the child's own script, then applied to its parent
(``flows.py``).

``RedisBackend`` is the contract's face and nothing more: each method hands
its work to a module named for what it does (``adding``, ``claims``,
``waiting``, ``finishing``, ``flows``, ``reclaim``, ``admin``, ``limits``,
``schedules``, ``reading``), passing the backend's ``RedisConnection``
(``connection.py``: clients, keys, scripts, and what this process remembers
of its claims and waits) first; connecting, closing and the server's clock
are the connection's own, and lease renewal its ``renewal.py`` client's. The
connection is an object of its own,
composed here rather than inherited, so that those modules depend on the
state they use and not on the contract class (this module imports them,
never the reverse); the backend keeps only what ``Backend`` asks of every
store: its URL, clock, warnings and event-loop tracking, which the
connection calls back into.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis

from conveyor.backends.base import Backend
from conveyor.backends.managing import RETRIED, WorkerCommand
from conveyor.backends.redis import (
    adding,
    admin,
    changing,
    claims,
    draining,
    events,
    finishing,
    flows,
    limits,
    reading,
    reclaim,
    schedules,
    stats,
    waiting,
)
from conveyor.backends.redis.connection import RedisConnection
from conveyor.backends.redis.keys import Keys
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
from conveyor.events import EventPage, EventSettings
from conveyor.job import ChildOutcome, Job, JobState, LogEntry, Retention
from conveyor.limits import Limits, Rate
from conveyor.stats import Stats

__all__ = ["RedisBackend"]


class RedisBackend(Backend):
    """The Redis store (see the module docstring)."""

    def __init__(
        self, url: str, *, clock: Clock | None = None, events: EventSettings | None = None
    ) -> None:
        super().__init__(clock=clock, events=events)
        self.url = url
        self._conn = RedisConnection(
            url,
            clock=self.clock,
            follow_loop=self._follow_loop,
            warnings=self.warnings,
            events=self.events,
        )

    @property
    def keys(self) -> Keys:
        """Every key name of the backend's namespace."""
        return self._conn.keys

    @property
    def client(self) -> aioredis.Redis:
        """The connected client of the running loop (for tests and tools)."""
        return self._conn.client

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        await self._conn.connect()

    async def close(self) -> None:
        await self._conn.close()
        self._release_loop()

    def _leave_loop(self, old: asyncio.AbstractEventLoop) -> None:
        self._conn.leave_loop(old)

    # -- producers -------------------------------------------------------------

    async def enqueue(self, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        return await adding.enqueue(self._conn, jobs=jobs)

    # -- workers ---------------------------------------------------------------

    async def claim(
        self, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        handed = await waiting.handed_meanwhile(self._conn)  # they take their room first
        room = claims.room_left(slots, handed)
        return handed + await claims.claim(
            self._conn, slots=room, worker_id=worker_id, lease_ms=lease_ms
        )

    async def wait_for_jobs(
        self, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
    ) -> list[ClaimedJob]:
        return await waiting.wait_for_jobs(
            self._conn, queues=queues, timeout_s=timeout_s, taker=taker
        )

    def extend_leases_blocking(
        self, *, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[tuple[str, str]]:
        conn = self._conn  # renewal.py, on the worker's renewal thread
        return conn.renewer.extend(leases, conn.queue_of, conn.offset, lease_ms)

    async def report_progress(self, *, job_id: str, token: str, update: ProgressUpdate) -> bool:
        return await finishing.report_progress(
            self._conn, job_id=job_id, token=token, update=update
        )

    async def complete(
        self,
        *,
        job_id: str,
        token: str,
        result: bytes,
        retention: Retention,
        bucket: str | None = None,
    ) -> bool:
        return await finishing.complete(
            self._conn,
            job_id=job_id,
            token=token,
            result=result,
            retention=retention,
            bucket=bucket,
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
        return await finishing.fail(
            self._conn,
            job_id=job_id,
            token=token,
            error=error,
            traceback=traceback,
            retry_in_ms=retry_in_ms,
            retention=retention,
            bucket=bucket,
        )

    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        return await finishing.release(
            self._conn, job_id=job_id, token=token, block_ms=block_ms, block_group=block_group
        )

    async def apply_outcomes(self, *, child_ids: Sequence[str] | None, limit: int) -> int:
        return await flows.apply_outcomes(self._conn, child_ids=child_ids, limit=limit)

    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        return await flows.child_outcomes(self._conn, parent_id=parent_id)

    async def expired_leases(self, *, limit: int) -> list[tuple[str, int]]:
        """Oldest first within each queue."""
        return await reclaim.expired_leases(self._conn, limit=limit)

    async def reclaim_expired(
        self, *, max_stalls: int, limit: int, suspects: Sequence[tuple[str, int]] | None = None
    ) -> ReclaimResult:
        return await reclaim.reclaim_expired(
            self._conn, max_stalls=max_stalls, limit=limit, suspects=suspects
        )

    async def trim_finished(
        self, *, task: str, state: JobState, retention: Retention, limit: int
    ) -> int | None:
        return await admin.trim_finished(
            self._conn, task=task, state=state, retention=retention, limit=limit
        )

    async def record_worker(
        self, *, worker: WorkerInfo | None, worker_id: str
    ) -> WorkerCommand | None:
        return await admin.record_worker(self._conn, worker=worker, worker_id=worker_id)

    async def command_worker(self, *, worker_id: str, command: WorkerCommand) -> bool:
        return await admin.command_worker(self._conn, worker_id=worker_id, command=command)

    # -- inspection ------------------------------------------------------------

    async def get_job(self, *, job_id: str) -> Job | None:
        return await reading.get_job(self._conn, job_id=job_id)

    async def children_of(self, *, job_id: str, limit: int) -> list[Job]:
        return await reading.children_of(self._conn, job_id=job_id, limit=limit)

    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        return await reading.get_logs(self._conn, job_id=job_id)

    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        return await reading.list_jobs(
            self._conn, queue=queue, state=state, offset=offset, limit=limit
        )

    async def queues(self) -> list[QueueInfo]:
        return await reading.queues(self._conn)

    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        return await reading.workers(self._conn, seen_within_ms=seen_within_ms)

    async def memory_bytes(self) -> tuple[int | None, int | None]:
        return await reading.memory_bytes(self._conn)

    async def now_ms(self) -> int:
        return await self._conn.now()

    # -- administration ----------------------------------------------------------

    async def set_paused(self, *, queue: str, paused: bool) -> None:
        await admin.set_paused(self._conn, queue=queue, paused=paused)

    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        await limits.set_limits(
            self._conn, queue=queue, group=group, max_active=max_active, rate=rate
        )

    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        return await limits.get_limits(self._conn, queue=queue)

    async def retry_jobs(
        self,
        *,
        job_ids: Sequence[str] | None,
        queue: str | None,
        states: Sequence[JobState] = RETRIED,
    ) -> int:
        return await admin.retry_jobs(self._conn, job_ids=job_ids, queue=queue, states=states)

    async def cancel(self, *, job_id: str) -> bool:
        return await admin.cancel(self._conn, job_id=job_id)

    async def remove(self, *, job_id: str) -> bool:
        return await admin.remove(self._conn, job_id=job_id)

    async def promote(self, *, job_id: str) -> bool:
        return await admin.promote(self._conn, job_id=job_id)

    async def change_job(self, *, job_id: str, change: JobChange) -> bool | None:
        return await changing.change(self._conn, job_id=job_id, change=change)

    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        return await draining.clean(
            self._conn,
            queue=queue,
            state=state,
            older_than_ms=older_than_ms,
            keep=keep,
            limit=limit,
        )

    async def drain(self, *, queue: str, delayed: bool) -> int:
        return await draining.drain(self._conn, queue=queue, delayed=delayed)

    async def obliterate(self, *, queue: str, force: bool) -> int:
        return await draining.obliterate(self._conn, queue=queue, force=force)

    async def dedup_key_owner(self, *, key: str) -> str | None:
        return await admin.dedup_key(self._conn, key=key, release=False)

    async def release_dedup_key(self, *, key: str) -> bool:
        return await admin.dedup_key(self._conn, key=key, release=True) is not None

    # -- schedules ---------------------------------------------------------------

    async def save_schedule(self, *, schedule: Schedule) -> None:
        await schedules.save_schedule(self._conn, schedule=schedule)

    async def remove_schedule(self, *, schedule_id: str) -> bool:
        return await schedules.remove_schedule(self._conn, schedule_id=schedule_id)

    async def schedules(self) -> list[tuple[Schedule, Fired]]:
        return await schedules.schedules(self._conn)

    async def mark_tick(
        self, *, schedule_id: str, tick_ms: int, fired: NewJob | None = None
    ) -> None:
        await schedules.mark_tick(self._conn, schedule_id=schedule_id, tick_ms=tick_ms, fired=fired)

    # -- events ----------------------------------------------------------------

    async def read_events(self, *, after: str | None, limit: int) -> EventPage:
        return await events.page(self._conn, after, limit)

    async def trim_history(self) -> None:
        await events.trim(self._conn)

    async def last_event_id(self) -> str | None:
        return await events.last_id(self._conn)

    async def wait_for_events(self, *, after: str | None, timeout_s: float) -> None:
        await events.wait(self._conn, after, timeout_s)

    # -- statistics --------------------------------------------------------------

    async def read_stats(
        self, *, since_ms: int, until_ms: int, queue: str | None, task: str | None
    ) -> dict[int, Stats]:
        return await stats.minutes(self._conn, since_ms, until_ms, queue, task)

    async def totals(self) -> dict[str, Stats]:
        return await stats.totals(self._conn)
