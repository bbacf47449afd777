"""When a worker trims finished jobs to their task's retention.

A job that finishes is only noted for its retention (``keep_completed``,
``keep_failed``); deleting what is beyond it is a separate step of the store
(``Backend.trim_finished``), which this module decides when to take, so that
its cost per finished job stays small and flat whatever the concurrency:

- A trim of one ``(task, state)`` starts after every ``every(retention)``
  finishes seen by this worker (half the ``max_count``, at most ``EVERY``),
  and within ``TICK_S`` of any finish not yet followed by a trim, so a task
  is back at its ``max_count`` a second or so after a burst ends. It deletes
  up to ``BATCH`` jobs per store call, and calls again while batches come back
  full.
- Never two trims of the same ``(task, state)`` at once: one per key in this
  worker, and the store keeps other processes out (a call that finds one
  under way does nothing; the finishes stay noted for the next tick).
- Retention by age must hold for a task that no longer gets jobs: every
  ``AGE_CHECK_S`` (and when the worker starts) each task of the app with a
  ``max_age_s`` is trimmed too.

So a task may hold up to ``every(retention)`` more jobs than its
``max_count`` for a moment, and jobs older than ``max_age_s`` live at most
about ``AGE_CHECK_S`` longer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from conveyor.backends.base import Backend
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.job import JobState, Retention, is_own_bucket

__all__ = ["Trimmer"]

log = logging.getLogger("conveyor.worker")

BATCH = 1000  # jobs deleted per store call at most
EVERY = 500  # finishes of one (task, state) between trims, at most
TICK_S = 1.0
AGE_CHECK_S = 60.0

Key = tuple[str, JobState]


def every(retention: Retention) -> int:
    """Finishes between two trims: a trim deletes at least a batch this big
    under load, which keeps its cost per job low on every store."""
    if retention.max_count is None:
        return EVERY
    return max(1, min(EVERY, retention.max_count // 2))


class Trimmer:
    """One worker's trims: noted finishes, and the trim under way per key."""

    def __init__(
        self,
        backend: Backend,
        retentions: Callable[[], Iterable[tuple[str, JobState, Retention]]],
    ) -> None:
        self._backend = backend
        self._retentions = retentions  # every task's own, for the age checks
        self._unreachable: BackendUnavailable | None = None  # met since the last tick
        self._noted: dict[Key, tuple[int, Retention]] = {}  # finishes since the last trim
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._aged_at = float("-inf")
        # Per-job retention buckets by age seen finishing here, checked by age too.
        self._own_aged: dict[Key, Retention] = {}

    def finished(self, task: str, state: JobState, retention: Retention) -> None:
        """A job of ``task`` (a retention bucket: ``job.retention_bucket``) was
        written ``state`` (completed, or failed for good)."""
        if not retention.limited:
            return
        key = (task, state)
        if retention.max_age_s is not None and is_own_bucket(task):
            self._own_aged[key] = retention
        count = self._noted.get(key, (0, retention))[0] + 1
        self._noted[key] = (count, retention)
        if count >= every(retention):
            self._start(key, retention)

    async def tick(self) -> bool:
        """Trim what finished since the last trims; every ``AGE_CHECK_S`` also
        every task with an age limit. Run about every ``TICK_S``; returns when
        the trims under way end, raising ``BackendUnavailable`` if a trim since
        the last tick found the store unreachable (the caller keeps the
        worker's view of its store). Whether any trim ran (so the store answered)."""
        for key, (_, retention) in list(self._noted.items()):
            self._start(key, retention)
        now = time.monotonic()
        if now - self._aged_at >= AGE_CHECK_S:
            self._aged_at = now
            for task, state, retention in self._retentions():
                if retention.max_age_s is not None:
                    self._start((task, state), retention)
            for key, retention in self._own_aged.items():
                self._start(key, retention)
        ran = bool(self._running)
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        unreachable, self._unreachable = self._unreachable, None
        if unreachable is not None:
            raise unreachable
        return ran

    async def close(self) -> None:
        """Stop the trims under way (a deleted batch stays deleted)."""
        running = list(self._running.values())
        for trim in running:
            trim.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _start(self, key: Key, retention: Retention) -> None:
        if key in self._running:
            return
        self._noted.pop(key, None)
        trim = asyncio.get_running_loop().create_task(self._trim(key, retention))
        self._running[key] = trim
        trim.add_done_callback(lambda _: self._running.pop(key, None))

    async def _trim(self, key: Key, retention: Retention) -> None:
        task, state = key
        try:
            while True:
                deleted = await self._backend.trim_finished(
                    task=task, state=state, retention=retention, limit=BATCH
                )
                if deleted is None:  # another process is trimming: look again later
                    count = self._noted.get(key, (0, retention))[0]
                    self._noted[key] = (max(count, 1), retention)
                    return
                if deleted < BATCH:
                    return
        except BackendUnavailable as exc:  # tried again at the next tick
            self._noted.setdefault(key, (1, retention))
            self._unreachable = exc
        except BackendError as exc:
            log.warning("trimming %s jobs of %s failed: %s", state, task, exc)
