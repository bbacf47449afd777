"""Job events: what happened to jobs, as it happened, across every process.

Each store writes an event in the same atomic step as the state change it
reports (the same Lua script on Redis, the same transaction on SQLite), so a
subscriber never sees a state without its event, nor an event for a change
that was rolled back. ``app.events()`` reads them in order, each once, and
can resume after an event id (a browser's ``Last-Event-ID``).

One event per change, named for it:

==================  =========================================================
``enqueued``        a job was added (``state``: where it starts: waiting,
                    delayed or waiting_children)
``waiting``         a job became ready: its delay came due, it was promoted,
                    released unstarted, retried by hand, or its children are
                    done
``delayed``         a job was scheduled for later by hand (not a retry): a
                    waiting job given a delay (``change_delay``)
``changed``         a job not yet started was changed, its state the same:
                    its delay (``run_at``), priority or arguments
                    (``change_delay``, ``change_priority``, ``update_args``)
``waiting_children``  a parent waits for its children again (retried by hand)
``active``          a worker claimed it (``attempt``)
``progress``        its running attempt reported progress (``progress``,
                    ``detail``)
``completed``       it finished with ``result``
``retrying``        an attempt failed and it runs again at ``run_at``
                    (``error``)
``failed``          it failed for good (``error``)
``stalled``         its lease expired unrenewed (``state``: back to waiting,
                    or failed after too many stalls)
``cancelled``       it was cancelled, or expired unstarted (``error``)
``removed``         it was deleted by ``remove``, ``clean``, ``drain`` or
                    ``obliterate`` (trimming to retention deletes silently)
``tick``            a schedule fired (``schedule``; ``job_id`` is its job)
==================  =========================================================

Bounds: a store keeps the newest ``EventSettings.max_count`` events (default
10,000; about as many on Redis, whose streams trim in whole nodes), and every
worker drops those older than ``max_age_s`` (default an hour) every few
seconds. A subscriber that falls
further behind, or resumes after an id that is gone, gets a ``gap`` event
first: events were missed, so read the jobs again; it never skips silently.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import msgspec

from conveyor import validate
from conveyor.job import JobState

__all__ = ["EventKind", "EventPage", "EventSettings", "JobEvent", "matches"]


class EventKind(enum.StrEnum):
    ENQUEUED = "enqueued"
    WAITING = "waiting"
    DELAYED = "delayed"
    CHANGED = "changed"
    WAITING_CHILDREN = "waiting_children"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    RETRYING = "retrying"
    FAILED = "failed"
    STALLED = "stalled"
    CANCELLED = "cancelled"
    REMOVED = "removed"
    TICK = "tick"
    GAP = "gap"  # not stored: events were missed before the next one


class JobEvent(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One change of one job (or a ``gap`` marker, with only ``id`` and ``kind``).

    ``id`` is the store's, opaque and ordered: pass it as ``after`` to resume.
    ``at_ms`` is the time on the store's clock; ``state`` the job's state
    after the change (``None`` once removed). The kind's data: ``attempt``,
    ``run_at_ms``, ``progress`` and ``detail``, ``result`` (its JSON value),
    ``error``, ``schedule``.
    """

    id: str
    kind: EventKind
    job_id: str = ""
    queue: str = ""
    task: str = ""
    at_ms: int = 0
    state: JobState | None = None
    attempt: int | None = None
    run_at_ms: int | None = None
    progress: float | None = None
    detail: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    schedule: str | None = None


class EventPage(msgspec.Struct, frozen=True):
    """Events after an id, oldest first; ``gap``: some after it were trimmed
    away before this read, so the page does not follow on from it."""

    events: list[JobEvent]
    gap: bool = False


class EventSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Whether this app's changes write events, how many a store keeps, and
    whether and how long it counts the statistics (``conveyor.stats``: per
    minute for 7 days by default, and per queue ever).

    ``enabled=False`` writes no events: subscribers then see no change this
    app makes. ``stats=False`` counts no outcome: ``app.stats()`` and the
    totals then miss what this app's workers do. ``Conveyor(url,
    events=False)`` turns off both. On Redis these are each app's own; on
    SQLite the store's, held in the file: the app that connects last sets
    them for every process using it (so a worker and its producers should
    agree).
    """

    enabled: bool = True
    stats: bool = True
    max_count: int = 10_000
    max_age_s: float = 3600.0
    stats_max_age_s: float = 7 * 86400.0

    def __post_init__(self) -> None:
        for name in ("enabled", "stats"):
            validate.flag(name, getattr(self, name))
        validate.count("max_count", self.max_count, minimum=1)
        validate.seconds("max_age_s", self.max_age_s, allow_zero=False)
        validate.seconds("stats_max_age_s", self.stats_max_age_s, allow_zero=False)


def matches(
    event: JobEvent,
    *,
    queue: str | None,
    job_id: str | None,
    kinds: Iterable[EventKind] | None,
) -> bool:
    """Whether a subscriber with these filters gets ``event`` (a gap always)."""
    if event.kind is EventKind.GAP:
        return True
    if queue is not None and event.queue != queue:
        return False
    if job_id is not None and event.job_id != job_id:
        return False
    return kinds is None or event.kind in kinds
