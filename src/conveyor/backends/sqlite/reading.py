"""Reading the SQLite store: jobs, their logs and children's outcomes, queue
counts and workers. Each function runs on a reader thread's connection (WAL:
it never waits for the writer) and sees one committed snapshot.
"""

from __future__ import annotations

import sqlite3

import msgspec

from conveyor.backends.rows import COLUMNS, job_from_row
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.job import ChildOutcome, Job, JobState, LogEntry, from_ms

# Counts per queue and state, each part read from a covering partial index
# (grouped waiting jobs from their groups' counts).
_COUNTS = "SELECT queue, state, n FROM job_counts WHERE n > 0"  # kept by triggers (schema.sql)


def get_job(conn: sqlite3.Connection, *, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def children_of(conn: sqlite3.Connection, *, job_id: str, limit: int) -> list[Job]:
    """A parent's children, in the order the flow gave them (they were added so)."""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE parent_id = ? ORDER BY rowid LIMIT ?", (job_id, limit)
    ).fetchall()
    return [job_from_row(row) for row in rows]


def get_logs(conn: sqlite3.Connection, *, job_id: str) -> list[LogEntry]:
    rows = conn.execute(
        "SELECT at, message FROM job_logs WHERE job_id = ? ORDER BY rowid", (job_id,)
    )
    return [LogEntry(at=from_ms(at), message=message) for at, message in rows]


def list_jobs(
    conn: sqlite3.Connection, *, queue: str | None, state: JobState, offset: int, limit: int
) -> list[Job]:
    if state == JobState.WAITING:
        return _list_waiting(conn, queue, offset, limit)
    order = {
        JobState.DELAYED: "run_at",
        JobState.ACTIVE: "started_at",
        JobState.WAITING_CHILDREN: "created_at",
    }.get(state, "finished_at DESC")
    where = "state = ?" + (" AND queue = ?" if queue is not None else "")
    if state.finished:  # lets the partial index on finished jobs serve the query
        where += " AND finished_at IS NOT NULL"
    params = (state.value, queue) if queue is not None else (state.value,)
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM jobs WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return [job_from_row(row) for row in rows]


def _list_waiting(
    conn: sqlite3.Connection, queue: str | None, offset: int, limit: int
) -> list[Job]:
    """Waiting jobs by priority, then FIFO: those without a group and the
    grouped ones each come from their own partial index, then merge."""
    scope = " AND queue = ?" if queue is not None else ""
    params = (queue,) if queue is not None else ()
    order = " ORDER BY priority DESC, seq LIMIT ?"
    rows = [
        row
        for grouped in ("grp IS NULL", "grp IS NOT NULL")
        for row in conn.execute(
            f"SELECT priority, seq, {COLUMNS} FROM jobs WHERE state = 'waiting'"
            f" AND {grouped}{scope}{order}",
            (*params, offset + limit),
        )
    ]
    rows.sort(key=lambda row: (-row[0], row[1]))
    return [job_from_row(row[2:]) for row in rows[offset : offset + limit]]


def queues(conn: sqlite3.Connection) -> list[QueueInfo]:
    """Every queue that has a row or jobs, by name, with its jobs counted per state."""
    infos: dict[str, tuple[bool, dict[JobState, int]]] = {
        name: (bool(paused), dict.fromkeys(JobState, 0))
        for name, paused in conn.execute("SELECT name, paused FROM queues")
    }
    for queue, state, count in conn.execute(_COUNTS):
        counts = infos.setdefault(queue, (False, dict.fromkeys(JobState, 0)))[1]
        counts[JobState(state)] += count
    return [
        QueueInfo(name=name, paused=paused, counts=counts)
        for name, (paused, counts) in sorted(infos.items())
    ]


def child_outcomes(conn: sqlite3.Connection, *, parent_id: str) -> list[ChildOutcome]:
    rows = conn.execute(
        "SELECT child_id, task, state, result, error, ignored FROM job_outcomes"
        " WHERE parent_id = ?",
        (parent_id,),
    )
    return [
        ChildOutcome(
            id=child,
            task=task,
            state=JobState(state),
            error=error,
            ignored=bool(ignored),
            result=None if result is None else msgspec.json.decode(result),
        )
        for child, task, state, result, error, ignored in rows
    ]


def workers(conn: sqlite3.Connection, *, seen_since_ms: int) -> list[WorkerInfo]:
    """The workers that reported at ``seen_since_ms`` or later, by id."""
    rows = conn.execute(
        "SELECT info FROM workers WHERE last_seen >= ? ORDER BY id", (seen_since_ms,)
    )
    return [msgspec.json.decode(info, type=WorkerInfo) for (info,) in rows]
