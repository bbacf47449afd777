"""Managing the SQLite store: pausing queues, retrying, cancelling, removing
and promoting jobs, deleting finished ones (by hand and by retention), and
the workers' heartbeat rows. Each function but ``retry_jobs`` is one writer
transaction; ``retry_jobs`` is a series of bounded ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from conveyor.backends.managing import RETRIED, WorkerCommand, worker_command
from conveyor.backends.sqlite import adding, draining, flows
from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.state import State
from conveyor.backends.values import WorkerInfo
from conveyor.clock import Clock
from conveyor.job import JobState, Retention, is_own_bucket

RETRY_BATCH = 1000  # jobs retried per transaction, to keep each one short


def set_paused(conn: sqlite3.Connection, *, queue: str, paused: bool) -> None:
    conn.execute(
        "INSERT INTO queues (name, paused) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        (queue, int(paused)),
    )


async def retry_jobs(
    backend: State,
    *,
    job_ids: Sequence[str] | None,
    queue: str | None,
    states: Sequence[JobState] = RETRIED,
) -> int:
    """The given jobs in one of ``states``, or every failed job (of the
    queue), back to waiting as new: in transactions of ``RETRY_BATCH``."""
    moved = total = await backend.write(_retry_batch, backend.clock, job_ids, queue, states)
    while job_ids is None and moved == RETRY_BATCH:  # short: no writer waits long
        moved = await backend.write(_retry_batch, backend.clock, job_ids, queue, states)
        total += moved
    backend.wakeup.set()
    return total


def _retry_batch(
    conn: sqlite3.Connection,
    clock: Clock,
    job_ids: Sequence[str] | None,
    queue: str | None,
    states: Sequence[JobState],
) -> int:
    now = clock.now_ms()
    if job_ids is not None:
        where = f"id IN ({placeholders(len(job_ids))}) AND state IN ({placeholders(len(states))})"
        params: tuple[str, ...] = (*job_ids, *(state.value for state in states))
    else:
        where = "state = 'failed' AND finished_at IS NOT NULL" + (
            " AND queue = ?" if queue is not None else ""
        )
        params = (queue,) if queue is not None else ()
    ids = [
        id_
        for (id_,) in conn.execute(f"SELECT id FROM jobs WHERE {where} LIMIT {RETRY_BATCH}", params)
    ]
    if not ids:
        return 0
    (last,) = conn.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value",
        (len(ids),),
    ).fetchone()
    conn.executemany(
        "UPDATE jobs SET state = CASE WHEN pending > 0 THEN 'waiting_children'"
        " ELSE 'waiting' END, seq = ?, run_at = ?, attempts = 0,"
        " stalls = 0, error = NULL, traceback = NULL, result = NULL, progress = 0,"
        " progress_detail = NULL, started_at = NULL, finished_at = NULL,"
        " worker_id = NULL, keep = NULL WHERE id = ?",
        [(adding.order(now, last - len(ids) + 1 + i), now, id_) for i, id_ in enumerate(ids)],
    )
    return len(ids)


def cancel(conn: sqlite3.Connection, clock: Clock, *, job_id: str) -> bool:
    now = clock.now_ms()
    row = conn.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = ?, error = 'cancelled',"
        " token = NULL, lease_expires_at = NULL, expires_at = NULL"
        " WHERE id = ? AND state NOT IN ('completed', 'failed', 'cancelled')"
        " RETURNING parent_id",
        (now, job_id),
    ).fetchone()
    if row is not None and row[0] is not None:
        flows.settle(conn, job_id, now)
    return row is not None


def remove(conn: sqlite3.Connection, clock: Clock, *, job_id: str) -> bool:
    rows = conn.execute(
        f"DELETE FROM jobs WHERE id = ? AND state != 'active' RETURNING {draining.RETURNED}",
        (job_id,),
    ).fetchall()
    draining.forget_removed(conn, clock, rows)
    return bool(rows)


def promote(conn: sqlite3.Connection, clock: Clock, *, job_id: str) -> bool:
    now = clock.now_ms()
    cursor = conn.execute(
        f"UPDATE jobs SET state = 'waiting', run_at = ?, {adding.READY_AGAIN}"
        " WHERE id = ? AND state = 'delayed'",
        (now, now, job_id),
    )
    return cursor.rowcount == 1


def trim_finished(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    task: str,
    state: JobState,
    retention: Retention,
    limit: int,
) -> int:
    """One writer transaction: the writer lock keeps it alone across processes.
    ``task`` is a bucket: a task's name (its index, ``keep IS NULL``) or a
    per-job retention's (``keep``'s index)."""
    bucket = "keep = ? AND" if is_own_bucket(task) else "task = ? AND keep IS NULL AND"
    scope = f"{bucket} state = ? AND finished_at IS NOT NULL"
    deleted = 0
    if retention.max_age_s is not None:
        cutoff = clock.now_ms() - int(retention.max_age_s * 1000)
        deleted += conn.execute(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {scope}"
            " AND finished_at < ? ORDER BY finished_at LIMIT ?)",
            (task, state.value, cutoff, limit),
        ).rowcount
    if retention.max_count is not None and deleted < limit:
        deleted += conn.execute(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {scope}"
            " ORDER BY finished_at DESC LIMIT ? OFFSET ?)",
            (task, state.value, limit - deleted, retention.max_count),
        ).rowcount
    return deleted


def record_worker(
    conn: sqlite3.Connection, *, worker: WorkerInfo | None, worker_id: str
) -> WorkerCommand | None:
    """The worker's heartbeat row, or none (``worker`` None: it stopped), and
    the command left for it, taken."""
    taken = conn.execute(
        "DELETE FROM worker_commands WHERE worker_id = ? RETURNING command", (worker_id,)
    ).fetchone()
    if worker is None:
        conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return None
    conn.execute(
        "INSERT INTO workers (id, info, last_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET info = excluded.info,"
        " last_seen = excluded.last_seen",
        (worker_id, msgspec.json.encode(worker), worker.last_seen_ms),
    )
    return None if taken is None else worker_command(taken[0])


def command_worker(conn: sqlite3.Connection, *, worker_id: str, command: WorkerCommand) -> bool:
    if conn.execute("SELECT 1 FROM workers WHERE id = ?", (worker_id,)).fetchone() is None:
        return False
    conn.execute(
        "INSERT INTO worker_commands (worker_id, command) VALUES (?, ?)"
        " ON CONFLICT (worker_id) DO UPDATE SET command = excluded.command",
        (worker_id, command),
    )
    return True


def dedup_key_owner(conn: sqlite3.Connection, clock: Clock, *, key: str) -> str | None:
    row = conn.execute("SELECT job_id, until FROM dedup_keys WHERE key = ?", (key,)).fetchone()
    if row is None or (row[1] is not None and row[1] <= clock.now_ms()):
        return None
    return str(row[0])


def release_dedup_key(conn: sqlite3.Connection, clock: Clock, *, key: str) -> bool:
    """Free the key; a throttle window already closed counts as free."""
    row = conn.execute("DELETE FROM dedup_keys WHERE key = ? RETURNING until", (key,)).fetchone()
    return row is not None and (row[0] is None or row[0] > clock.now_ms())
