"""A store's events as they come: the iterator ``app.events()`` returns, and
waiting for one job to finish on them rather than polling its row.

A ``Subscription`` starts "now" (at the newest event) or after a given id,
reads pages of events in order and, when it has caught up, waits on the
store (``Backend.wait_for_events``: a blocking read on Redis, the data
version on SQLite) instead of sleeping a fixed time. Filters apply as the
events are read; a ``gap`` marker always comes through (see
``conveyor.events``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable

from conveyor import validate
from conveyor.backends.base import Backend
from conveyor.errors import InvalidInput, JobTimeout
from conveyor.events import EventKind, JobEvent, matches
from conveyor.job import Job

__all__ = ["Subscription", "wait_finished"]

PAGE = 500  # events read per store call at most
WAIT_S = 5.0  # a caught-up subscriber's longest wait on the store before it reads again
RECHECK_S = 5.0  # a waiting handle reads its job this often even without an event
POLL_S = 0.05  # and this often when its app writes no events


class Subscription:
    """An async iterator of ``JobEvent``; ``start()`` fixes where it begins
    (the first ``__anext__`` does so if nobody did)."""

    def __init__(
        self,
        backend: Backend,
        *,
        queue: str | None = None,
        job_id: str | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        after: str | None = None,
    ) -> None:
        self.backend = backend
        self.queue = None if queue is None else validate.name("queue", queue)
        self.job_id = None if job_id is None else validate.name("job_id", job_id)
        self.kinds = None if kinds is None else _kinds(kinds)
        if after is not None and (not isinstance(after, str) or not after):
            raise InvalidInput("after", "must be an event id (a non-empty str)")
        self._cursor = after
        self._started = False
        self._pending: collections.deque[JobEvent] = collections.deque()

    @property
    def last_id(self) -> str | None:
        """The id of the last event read (filtered out or not): resume after it."""
        return self._cursor

    async def start(self) -> Subscription:
        if not self._started:
            if self._cursor is None:
                self._cursor = await self.backend.last_event_id()
            else:  # a bad id fails here, not at the first event
                await self.backend.read_events(after=self._cursor, limit=0)
            self._started = True
        return self

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        await self.start()
        while not self._pending:
            page = await self.backend.read_events(after=self._cursor, limit=PAGE)
            if page.gap:
                self._pending.append(JobEvent(id=self._cursor or "", kind=EventKind.GAP))
            for event in page.events:
                self._cursor = event.id
                if matches(event, queue=self.queue, job_id=self.job_id, kinds=self.kinds):
                    self._pending.append(event)
            if not self._pending and len(page.events) < PAGE:
                await self.backend.wait_for_events(after=self._cursor, timeout_s=WAIT_S)
        return self._pending.popleft()


def _kinds(kinds: Iterable[EventKind | str]) -> frozenset[EventKind]:
    if isinstance(kinds, str):
        kinds = [kinds]
    chosen = set()
    for kind in kinds:
        try:
            chosen.add(EventKind(kind))
        except ValueError:
            names = ", ".join(k.value for k in EventKind)
            raise InvalidInput("kinds", f"unknown event kind {kind!r} (one of {names})") from None
    return frozenset(chosen)


async def wait_finished(
    subscription: Subscription, get_job: Callable[[str], Awaitable[Job]], timeout: float
) -> Job:
    """The job once finished: read once after subscribing (so no change is
    missed between), then again at each event that may have finished it."""
    job_id = subscription.job_id
    assert job_id is not None
    timeout = validate.seconds("timeout", timeout)
    job: Job | None = None
    try:
        async with asyncio.timeout(timeout):
            if not subscription.backend.events.enabled:
                # This app writes no events (on SQLite, the store has none):
                # read the job at a short pace, never waiting on the stream.
                # (Waits on it cut short 20 times a second made a wait on a
                # Redis Cluster miss its job's end for the whole timeout in
                # about 1 run in 40.)
                job = await get_job(job_id)
                while not job.state.finished:
                    await asyncio.sleep(POLL_S)
                    job = await get_job(job_id)
                return job
            await subscription.start()
            job = await get_job(job_id)
            while not job.state.finished:  # on events, and now and then without one
                try:
                    event = await asyncio.wait_for(anext(subscription), RECHECK_S)
                except TimeoutError:
                    job = await get_job(job_id)
                    continue
                finished = event.state is not None and event.state.finished
                if finished or event.kind in (EventKind.GAP, EventKind.REMOVED):
                    job = await get_job(job_id)  # JobNotFound once removed
    except TimeoutError:
        state = "unread" if job is None else job.state
        raise JobTimeout(f"job {job_id} still {state} after {timeout}s") from None
    return job
