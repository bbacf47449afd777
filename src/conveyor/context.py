"""What a running job can reach: ``current_job()`` with progress and logs.

``progress()`` and ``log()`` never block and may be called from async code or
from a sync task's thread. They record the newest progress and queue log
lines; the worker writes them to the store in the background, coalescing
bursts (a job calling ``progress`` in a tight loop costs a few writes, not one
per call), and always before the job's result. Writes carry the job's lease
token, so a job that lost its lease cannot report progress any more.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor import validate
from conveyor.arguments import encode
from conveyor.backends.values import ProgressUpdate
from conveyor.errors import ConveyorError, InvalidInput
from conveyor.job import ChildOutcomes, Job

__all__ = ["JobContext", "current_job"]

MAX_LOG_CHARS = 10_000
MAX_DETAIL_BYTES = 16 * 1024

_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("conveyor_job")


def current_job() -> JobContext:
    """The job running in this task (or its thread). Raises outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise ConveyorError("current_job() called outside a running job") from None


def running_job() -> JobContext | None:
    """The job running in this task (or its thread), or None outside a job."""
    return _current.get(None)


def enter_job(context: JobContext) -> None:
    """Make ``context`` the running job of this task (or ``contextvars`` scope)."""
    _current.set(context)


class JobContext:
    def __init__(
        self,
        job: Job,
        *,
        loop: asyncio.AbstractEventLoop,
        write: Callable[[ProgressUpdate], Awaitable[bool]],
        children: ChildOutcomes | None = None,
    ) -> None:
        self.job = job
        # A flow's parent: how each of its children ended (``conveyor.flow``).
        self.children = children if children is not None else ChildOutcomes()
        self._loop = loop
        self._write = write
        self._lock = threading.Lock()
        self._progress: float | None = None
        self._detail: dict[str, Any] | None = None
        self._logs: list[str] = []
        self._scheduled = False
        self._flushing = asyncio.Lock()
        self.lost = False  # set once a write was refused: the lease is gone

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def progress(self, percent: float, **detail: Any) -> None:
        """Report ``percent`` done (0-100) and an optional small JSON detail."""
        percent = validate.percent("progress", percent)
        if detail:
            try:
                size = len(encode(detail))
            except (TypeError, ValueError) as exc:
                raise InvalidInput("detail", f"is not JSON-serializable: {exc}") from None
            if size > MAX_DETAIL_BYTES:
                raise InvalidInput("detail", f"must encode to at most {MAX_DETAIL_BYTES} bytes")
        with self._lock:
            self._progress = percent
            self._detail = detail or None
        self._schedule()

    def log(self, message: str) -> None:
        """Append a line to the job's log (kept with the job, shown by the CLI)."""
        with self._lock:
            self._logs.append(str(message)[:MAX_LOG_CHARS])
        self._schedule()

    def _schedule(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self._loop.call_soon_threadsafe(self._start_flush)

    def _start_flush(self) -> None:
        task = self._loop.create_task(self.flush())
        task.add_done_callback(_ignore_result)

    async def flush(self) -> None:
        """Write what is pending; returns once it is stored (or refused)."""
        if not self._scheduled and not self._flushing.locked():
            return  # nothing reported since the last write (the usual case)
        async with self._flushing:
            with self._lock:
                self._scheduled = False
                update = ProgressUpdate(
                    progress=self._progress, detail=self._detail, logs=tuple(self._logs)
                )
                self._progress = self._detail = None
                self._logs = []
            if update.progress is None and not update.logs:
                return
            if not self.lost and not await self._write(update):
                self.lost = True


def _ignore_result(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("conveyor.worker").warning("progress write failed: %s", task.exception())
