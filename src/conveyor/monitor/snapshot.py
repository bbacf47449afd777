"""What the store holds now, read once for every scrape and health check.

A ``Snapshot`` is the store-side picture the metrics and ``/workers/health``
report: each queue's counts, paused flag, the age of the job next in line,
its outcomes ever, the workers alive for it, and the store's memory. Reading
it costs the store a handful of calls (the queues, the totals, the workers,
one head of line per queue with waiting jobs, the memory), so ``Snapshots``
caches it for ``cache_s``: many scrapes, many processes' scrapes even, cost
the store one read per ``cache_s`` each, and every process reports the same
numbers because they all read them from the store.

A store that does not answer within ``timeout_s`` gives a snapshot with
``up`` False and nothing else in it: stale numbers of a store that is down
would mislead more than none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import msgspec

from conveyor.app import Conveyor
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.job import JobState
from conveyor.stats import Stats

__all__ = ["QueueSnapshot", "Snapshot", "Snapshots", "answered"]

T = TypeVar("T")

CACHE_S = 5.0  # a snapshot serves this long
TIMEOUT_S = 3.0  # a store slower than this to answer is reported down
ALIVE_WITHIN_S = 30.0  # a worker seen this recently is alive (it beats every 5 s)


class QueueSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    paused: bool
    counts: dict[JobState, int]
    # How long the job next in line (by priority, then FIFO) has been ready
    # for: the queue's latency as Sidekiq names it. None: nothing waits.
    oldest_waiting_s: float | None
    processed: Stats  # its outcomes ever (the store's totals)
    workers: int  # workers alive that take jobs from it (a paused one takes none)


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    up: bool
    error: str | None = None  # why the store was reported down
    taken_ms: int = 0  # the store's clock when read
    queues: list[QueueSnapshot] = []
    workers: list[WorkerInfo] = []  # alive ones
    memory_used: int | None = None  # bytes (Redis's INFO memory)
    memory_limit: int | None = None


async def answered(work: Awaitable[T], timeout_s: float) -> tuple[T | None, str | None]:
    """What ``work`` returned, or None and why the store did not answer:
    not within ``timeout_s``, or an error of whatever driver it has."""
    try:
        return await asyncio.wait_for(work, timeout_s), None
    except TimeoutError:
        return None, f"no answer within {timeout_s:g} s"
    except Exception as exc:  # an unreachable store, whatever its driver raised
        return None, f"{type(exc).__name__}: {exc}"


class Snapshots:
    """The latest ``Snapshot`` of ``app``'s store, read again once it is
    ``cache_s`` old; concurrent callers of a stale one share one read."""

    def __init__(
        self,
        app: Conveyor,
        *,
        cache_s: float = CACHE_S,
        timeout_s: float = TIMEOUT_S,
        alive_within_s: float = ALIVE_WITHIN_S,
    ) -> None:
        self.app = app
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self.alive_within_s = alive_within_s
        self.latest = Snapshot(up=False, error="not read yet")
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Snapshot:
        async with self._lock:
            if time.monotonic() - self._read_at >= self.cache_s:
                self.latest = await self._read()
                self._read_at = time.monotonic()
            return self.latest

    async def _read(self) -> Snapshot:
        snapshot, error = await answered(self._read_store(), self.timeout_s)
        return snapshot if snapshot is not None else Snapshot(up=False, error=error)

    async def _read_store(self) -> Snapshot:
        app = self.app
        # One call after another: concurrent ones would only open more
        # connections to the store (a Cluster client's are left open).
        now_ms = await app.backend.now_ms()
        queues = await app.queues()
        totals = await app.totals()
        workers = await app.workers(seen_within=self.alive_within_s)
        used, limit = await app.backend.memory_bytes()
        known = {info.name for info in queues}
        served = sorted({q for w in workers for q in w.queues} - known)  # none of it yet
        queues += [QueueInfo(name, False, dict.fromkeys(JobState, 0)) for name in served]
        heads = [
            await app.list_jobs(JobState.WAITING, queue=info.name, limit=1)
            for info in queues
            if info.counts.get(JobState.WAITING, 0)
        ]
        ready_ms = {job.queue: job.run_at.timestamp() * 1000 for head in heads for job in head}
        snapshots = [
            QueueSnapshot(
                name=info.name,
                paused=info.paused,
                counts=info.counts,
                oldest_waiting_s=(
                    max(0.0, (now_ms - ready_ms[info.name]) / 1000)
                    if info.name in ready_ms
                    else None
                ),
                processed=totals.get(info.name, Stats()),
                workers=sum(info.name in w.queues and not w.paused for w in workers),
            )
            for info in queues
        ]
        return Snapshot(
            up=True,
            taken_ms=now_ms,
            queues=snapshots,
            workers=workers,
            memory_used=used,
            memory_limit=limit,
        )
