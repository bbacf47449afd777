"""The embedded SQLite job store: the default, for one host.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``;
``?synchronous=full`` trades speed for durability against power loss (the
default ``normal`` in WAL mode survives any process crash, which is what
at-least-once delivery needs).

Each operation of the contract is one function run inside one transaction on
the writer thread (see ``connection.py``). Waiting for work costs one
``PRAGMA data_version`` per poll on a dedicated connection: it changes only
when another connection commits, and the poll interval stretches from 2 ms to
100 ms over the first second of idleness, so an idle worker uses well under
1 % of a core. Enqueues from the same process wake waiting workers at once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar

import msgspec

from conveyor.backends.base import KEEP_ALL, Backend, unreadable
from conveyor.backends.rows import UnreadableRecord, job_from_row
from conveyor.backends.sqlite import adding, admin, claims, connection, finishing, reclaim
from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.limits import (
    GROUP_KEY_SQL,
    GROUP_MAX_ACTIVE_SQL,
    is_group_key,
    scope_key,
)
from conveyor.backends.values import (
    ClaimedJob,
    NewJob,
    ProgressUpdate,
    QueueSlots,
    ReclaimResult,
    Taker,
    WorkerInfo,
)
from conveyor.clock import Clock
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.job import JobState, Retention

FAST_POLL_S = 0.002
SLOW_POLL_S = 0.1
WARM_S = 1.0  # keep polling fast this long after the last sign of work

_encode = msgspec.json.encode
P = ParamSpec("P")
T = TypeVar("T")


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


class LastClaim(NamedTuple):
    version: int | None  # the data version just before it (None: not read)
    retry_at: int | None  # when a limit that held jobs back frees
    held: dict[str, int]  # scopes held back (``limits.scope_key``) until when
    short: bool  # it found fewer jobs than it asked for


NO_CLAIM = LastClaim(None, None, {}, True)


class SQLiteTransitions(Backend):
    """Connections and every transition a worker or producer makes;
    ``SQLiteBackend`` adds reading and managing jobs."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.url = url
        self.path, self._synchronous = connection.parse_url(url)
        self._writer: connection.Writer | None = None
        self._readers: connection.Readers | None = None
        self._poll: sqlite3.Connection | None = None
        self.wakeup = asyncio.Event()
        self.last_work = 0.0
        # What the last claim of each set of queues saw (workers of one app
        # share this backend).
        self.last_claim: dict[tuple[str, ...], LastClaim] = {}

    # -- lifecycle -------------------------------------------------------------

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

    # -- producers -------------------------------------------------------------

    async def enqueue(self, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        if not jobs:
            return []
        now = self.clock.now_ms()

        def op(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
            return adding.add(conn, jobs, now)

        added = await self.write(op)
        self.wakeup.set()
        return added

    # -- workers ---------------------------------------------------------------

    async def claim(
        self, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        slots = [room for room in slots if room.free > 0 and room.queues]
        if not slots:
            return []
        limit = sum(room.free for room in slots)

        def op(conn: sqlite3.Connection) -> tuple[list[tuple[Any, ...]], claims.Claim]:
            claim = claims.Claim(conn, self.clock.now_ms())
            return claim.run(slots, worker_id, lease_ms), claim

        # The data version before a claim lets an idle wait skip a needless
        # look (see wait_for_jobs); read only when this claim may well find
        # too little, as the last one of these queues did (it costs a few us).
        key = tuple(queue for room in slots for queue in room.queues)
        last = self.last_claim.get(key)
        version = self.data_version() if last is None or last.short else None
        rows, claim = await self.write(op)
        self.last_claim[key] = LastClaim(version, claim.retry_at, claim.held, len(rows) < limit)
        # Rows become Job values after the transaction, not while holding the lock.
        claimed = []
        for row in rows:
            try:
                job = job_from_row(row[2:])
            except UnreadableRecord as exc:  # one bad record fails alone; the rest run
                await self.fail(
                    job_id=row[2],
                    token=row[1],
                    error=unreadable(exc),
                    traceback=None,
                    retry_in_ms=None,
                    retention=KEEP_ALL,
                )
                continue
            claimed.append(
                ClaimedJob(job=job, token=row[1], lease_expires_ms=row[0], payload=row[7])
            )
        if claimed:
            self.last_work = time.monotonic()
        return claimed

    async def wait_for_jobs(
        self, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
    ) -> list[ClaimedJob]:
        """Hands no jobs over: a claim costs no round trip here."""
        await self._wait(queues, timeout_s)
        return []

    async def _wait(self, queues: Sequence[str], timeout_s: float) -> None:
        poll = await self.poll_connection()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        self.wakeup.clear()
        version = poll.execute("PRAGMA data_version").fetchone()[0]
        claimed_at, next_due, held, _ = self.last_claim.get(tuple(queues), NO_CLAIM)
        # Nothing committed since the last claim looked: it saw all there is.
        # Otherwise look again: a job may be ready, or delayed (a retry
        # written just after that claim) and due before anything it saw.
        if version != claimed_at:
            if self._has_ready(poll, queues, held):
                return
            next_due = _earliest(next_due, self._next_due(poll, queues))
        while True:
            now = loop.time()
            if now >= deadline:
                return
            idle = time.monotonic() - self.last_work
            interval = FAST_POLL_S if idle < WARM_S else SLOW_POLL_S
            if next_due is not None:
                interval = min(interval, max(0.0, (next_due - self.clock.now_ms()) / 1000))
            try:
                await asyncio.wait_for(self.wakeup.wait(), min(interval, deadline - now))
                return
            except TimeoutError:
                pass
            if next_due is not None and self.clock.now_ms() >= next_due:
                return
            current = poll.execute("PRAGMA data_version").fetchone()[0]
            if current != version:
                version = current
                if self._has_ready(poll, queues, held):
                    self.last_work = time.monotonic()
                    return
                next_due = _earliest(next_due, self._next_due(poll, queues))

    async def poll_connection(self) -> sqlite3.Connection:
        self._follow_loop()
        if self._poll is None:
            await self.connect()
        assert self._poll is not None
        return self._poll

    def data_version(self) -> int | None:
        """Changes whenever another connection (our writer too) commits."""
        if self._poll is None:
            return None
        version: int = self._poll.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _has_ready(
        self, conn: sqlite3.Connection, queues: Sequence[str], held: dict[str, int]
    ) -> bool:
        """Whether a queue has a waiting job it may start: neither the queue nor
        the job's group paused, full, or held back by a limit the last claim met
        (``held``, scope to until when). A cheap read, not a claim."""
        now = self.clock.now_ms()
        held = {scope: until for scope, until in held.items() if until > now}
        asked = tuple(queues)
        closed = {
            name
            for (name,) in conn.execute(
                f"SELECT name FROM queues WHERE name IN ({placeholders(len(asked))}) AND (paused"
                " OR blocked_until > ? OR max_active <= (SELECT count(*) FROM jobs"
                " WHERE state = 'active' AND queue = name))",
                (*asked, now),
            )
        }
        open_ = tuple(q for q in asked if q not in closed and scope_key(q) not in held)
        if not open_:
            return False
        marks = placeholders(len(open_))
        if conn.execute(
            f"SELECT 1 FROM jobs WHERE state = 'waiting' AND grp IS NULL AND queue IN ({marks})"
            " LIMIT 1",
            open_,
        ).fetchone():
            return True
        groups_held = [key for key in held if is_group_key(key)][:500]
        return (
            conn.execute(
                "SELECT 1 FROM groups AS g LEFT JOIN queues AS q ON q.name = g.queue"
                f" WHERE g.waiting > 0 AND g.queue IN ({marks})"
                f" AND coalesce(g.blocked_until, 0) <= ? AND ({GROUP_MAX_ACTIVE_SQL} IS NULL"
                f" OR g.active < {GROUP_MAX_ACTIVE_SQL})"
                f" AND {GROUP_KEY_SQL} NOT IN ({placeholders(len(groups_held))})"
                " LIMIT 1",
                (*open_, now, *groups_held),
            ).fetchone()
            is not None
        )

    def _next_due(self, conn: sqlite3.Connection, queues: Sequence[str]) -> int | None:
        row = conn.execute(
            f"SELECT run_at FROM jobs WHERE state = 'delayed'"
            f" AND queue IN ({placeholders(len(queues))}) ORDER BY run_at LIMIT 1",
            tuple(queues),
        ).fetchone()
        return None if row is None else int(row[0])

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
        self, *, job_id: str, token: str, result: bytes, retention: Retention
    ) -> bool:
        return await self.write(
            finishing.complete, self.clock, job_id=job_id, token=token, result=result
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
    ) -> bool:
        return await self.write(
            finishing.fail,
            self.clock,
            job_id=job_id,
            token=token,
            error=error,
            traceback=traceback,
            retry_in_ms=retry_in_ms,
        )

    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        released = await self.write(
            finishing.release,
            self.clock,
            job_id=job_id,
            token=token,
            block_ms=block_ms,
            block_group=block_group,
        )
        self.wakeup.set()
        return released

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

    async def record_worker(self, *, worker: WorkerInfo | None, worker_id: str) -> None:
        await self.write(admin.record_worker, worker=worker, worker_id=worker_id)

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
