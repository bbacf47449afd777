"""Job events on SQLite: the ``events`` table the schema's triggers write in
the transaction of each change (``schema.sql``), the few events no trigger
can tell (a removal, a schedule's tick), reading them in pages, and waiting
for more by watching ``PRAGMA data_version``, which moves at every commit of
any connection to the file (our own writer's too)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from conveyor.backends.sqlite.state import State
from conveyor.errors import InvalidInput
from conveyor.events import EventKind, EventPage, EventSettings, JobEvent
from conveyor.job import JobState

__all__ = [
    "changed",
    "configure",
    "enqueued",
    "last_id",
    "page",
    "removed",
    "ticked",
    "trim",
    "wait",
]

POLL_S = 0.01  # how often a waiting subscriber looks at the data version

_NOW = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
_ON = "(SELECT value FROM counters WHERE name = 'events')"


class _Data(msgspec.Struct):
    """The ``data`` column: what the kind of an event carries."""

    attempt: int | None = None
    run_at_ms: int | None = None
    progress: float | None = None
    detail: dict[str, Any] | None = None
    error: str | None = None
    schedule: str | None = None


_data = msgspec.json.Decoder(_Data)
_batch = msgspec.json.Encoder()
_batched = msgspec.json.Decoder(list[tuple[str, str, str, str, int]])


def configure(conn: sqlite3.Connection, settings: EventSettings) -> None:
    """The store's event and statistics settings, as this app has them (the
    last app to connect wins)."""
    conn.executemany(
        "UPDATE counters SET value = ? WHERE name = ? AND value != ?",
        [
            (value, name, value)
            for name, value in (
                ("events", int(settings.enabled)),
                ("stats", int(settings.stats)),
                ("events_max_count", settings.max_count),
                ("events_max_age_ms", int(settings.max_age_s * 1000)),
                ("stats_max_age_ms", int(settings.stats_max_age_s * 1000)),
            )
        ],
    )


def trim(conn: sqlite3.Connection) -> None:
    """Drop events older than the store's ``events_max_age_ms``, but the newest
    (so ids never come back); the count bound is the schema's trigger's."""
    conn.execute(
        f"DELETE FROM events WHERE at < {_NOW} - (SELECT value FROM counters"
        " WHERE name = 'events_max_age_ms') AND id < (SELECT max(id) FROM events)"
    )


def removed(conn: sqlite3.Connection, jobs: Iterable[tuple[str, str, str]]) -> None:
    """``removed`` events for deleted ``(id, queue, task)`` jobs."""
    conn.executemany(
        "INSERT INTO events (at, kind, job_id, queue, task, state, data)"
        f" SELECT {_NOW}, 'removed', ?, ?, ?, NULL, '{{}}' WHERE {_ON}",
        list(jobs),
    )


def enqueued(
    conn: sqlite3.Connection, jobs: Sequence[tuple[str, str, str, str, int]], now: int
) -> None:
    """The ``enqueued`` events of the ``(id, queue, task, state, run_at)``
    jobs one call added, in one row: a bulk enqueue writes one row, not one
    a job (a row a job cost a tenth of bulk enqueue speed). The row takes
    the next ``len(jobs)`` ids, the last its own; a single job's is a row
    like any other event's."""
    if not jobs:
        return
    if len(jobs) == 1:
        ((job_id, queue, task, state, run_at),) = jobs
        conn.execute(
            "INSERT INTO events (at, kind, job_id, queue, task, state, data)"
            f" SELECT ?, 'enqueued', ?, ?, ?, ?, json_object('run_at_ms', ?) WHERE {_ON}",
            (now, job_id, queue, task, state, run_at),
        )
        return
    conn.execute(
        "INSERT INTO events (id, at, kind, job_id, queue, task, state, data, n)"
        " SELECT coalesce((SELECT max(id) FROM events), 0) + ?, ?, 'enqueued', '', '', '',"
        f" NULL, ?, ? WHERE {_ON}",
        (len(jobs), now, _batch.encode(jobs), len(jobs)),
    )


def changed(
    conn: sqlite3.Connection, job_id: str, queue: str, task: str, state: str, run_at_ms: int
) -> None:
    """A ``changed`` event: a job not yet started was changed in place."""
    conn.execute(
        "INSERT INTO events (at, kind, job_id, queue, task, state, data)"
        f" SELECT {_NOW}, 'changed', ?, ?, ?, ?, json_object('run_at_ms', ?) WHERE {_ON}",
        (job_id, queue, task, state, run_at_ms),
    )


def ticked(conn: sqlite3.Connection, schedule_id: str, job_id: str, task: str, queue: str) -> None:
    """A ``tick`` event: the schedule fired and made (or found) ``job_id``."""
    conn.execute(
        "INSERT INTO events (at, kind, job_id, queue, task, state, data)"
        f" SELECT {_NOW}, 'tick', ?, ?, ?, NULL, json_object('schedule', ?) WHERE {_ON}",
        (job_id, queue, task, schedule_id),
    )


def _cursor(after: str | None) -> int:
    if after is None:
        return 0
    try:
        number = int(after)
    except ValueError:
        raise InvalidInput("after", f"not an event id of this store: {after!r}") from None
    if number < 0:
        raise InvalidInput("after", f"not an event id of this store: {after!r}")
    return number


def page(conn: sqlite3.Connection, after: str | None, limit: int) -> EventPage:
    """Up to ``limit`` events after ``after`` (None: the oldest kept), oldest
    first. Ids run without holes, so a first id past ``after + 1`` means
    the ones between were trimmed: a gap."""
    cursor = _cursor(after)
    rows = conn.execute(
        "SELECT id, at, kind, job_id, queue, task, state, data, result, n FROM events"
        " WHERE id > ? ORDER BY id LIMIT ?",
        (cursor, limit),
    ).fetchall()
    found: list[JobEvent] = []
    for number, at, kind, job_id, queue, task, state, data, result, n in rows:
        if n == 1:
            found.append(
                _event(number, at, kind, job_id, queue, task, state, _data.decode(data), result)
            )
            continue
        for offset, job in enumerate(_batched.decode(data)):  # id, queue, task, state, run_at
            event_id = number - n + 1 + offset
            if event_id > cursor:  # a row read again after a page that ended inside it
                found.append(_event(event_id, at, kind, *job[:4], _Data(run_at_ms=job[4])))
    gap = after is not None and bool(found) and int(found[0].id) > cursor + 1
    return EventPage(found[:limit], gap=gap)


def last_id(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return None if row[0] is None else str(row[0])


def _event(
    number: int,
    at: int,
    kind: str,
    job_id: str,
    queue: str,
    task: str,
    state: str | None,
    fields: _Data,
    result: bytes | None = None,
) -> JobEvent:
    return JobEvent(
        id=str(number),
        kind=EventKind(kind),
        job_id=job_id,
        queue=queue,
        task=task,
        at_ms=at,
        state=None if state is None else JobState(state),
        attempt=fields.attempt,
        run_at_ms=fields.run_at_ms,
        progress=fields.progress,
        detail=fields.detail,
        result=None if result is None else msgspec.json.decode(result),
        error=fields.error,
        schedule=fields.schedule,
    )


async def wait(state: State, timeout_s: float, caught_up: Callable[[], Awaitable[bool]]) -> None:
    """Return at the next commit to the file by anyone, or after ``timeout_s``;
    at once if ``caught_up()``, asked once the data version is noted, says
    an event came since the caller's last read (else a commit between that
    read and this wait would go unnoticed for the whole timeout)."""
    await state.poll_connection()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seen = state.data_version()
    if not await caught_up():
        return
    while loop.time() < deadline:
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - loop.time())))
        if state.data_version() != seen:
            return
