"""The store contract's history: the events it writes with each change and
the statistics it counts with each outcome (``conveyor.events``,
``conveyor.stats``). ``Backend`` (``base.py``) has these methods too; they
live here to keep that module about the jobs."""

from __future__ import annotations

import abc

from conveyor.events import EventPage, EventSettings
from conveyor.stats import Stats

__all__ = ["History"]


class History(abc.ABC):
    events: EventSettings

    # -- events ----------------------------------------------------------------

    @abc.abstractmethod
    async def read_events(self, *, after: str | None, limit: int) -> EventPage:
        """Up to ``limit`` events after the id ``after`` (None: from the oldest
        kept), oldest first, with ``gap`` set when some after ``after`` were
        trimmed away. Every change of a job this contract makes writes its
        event atomically with the change (see ``conveyor.events``), unless
        ``self.events.enabled`` is off. An ``after`` that is no id of this
        store raises ``InvalidInput``."""

    @abc.abstractmethod
    async def trim_history(self) -> None:
        """Drop the events older than ``self.events.max_age_s`` (the count
        bound holds as they are written) and the statistics older than its
        ``stats_max_age_s``; every worker calls it now and then. SQLite keeps
        the newest event, so that its ids never come back."""

    @abc.abstractmethod
    async def last_event_id(self) -> str | None:
        """The newest event's id (None: none kept): where "from now" starts."""

    @abc.abstractmethod
    async def wait_for_events(self, *, after: str | None, timeout_s: float) -> None:
        """Return soon after events newer than ``after`` may exist (spurious
        returns allowed), or after ``timeout_s``."""

    # -- statistics (conveyor.stats) ------------------------------------------------

    @abc.abstractmethod
    async def read_stats(
        self, *, since_ms: int, until_ms: int, queue: str | None, task: str | None
    ) -> dict[int, Stats]:
        """The outcomes of each minute from ``since_ms`` to ``until_ms`` (keys:
        the minute's start, epoch ms; minutes with none left out) of a queue
        and task (None: all). Every outcome this contract makes is counted in
        its minute atomically with the change."""

    @abc.abstractmethod
    async def totals(self) -> dict[str, Stats]:
        """The outcomes of each queue that had any, ever (``runs``, ``run_ms``
        and ``wait_ms`` are not kept ever: 0)."""
