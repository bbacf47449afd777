"""Ending a run on SQLite, or reporting on it: completing, failing (to a
retry or for good), releasing a job unstarted, and progress and logs. Each
is one writer transaction, applied only while the caller's token is the
job's current one; a finished child tells its parent in the same
transaction (``flows.py``).
"""

from __future__ import annotations

import sqlite3

import msgspec

from conveyor.backends.sqlite import adding, flows, limits, tally
from conveyor.backends.values import ProgressUpdate
from conveyor.clock import Clock
from conveyor.job import is_own_bucket


def own_bucket(bucket: str | None) -> str | None:
    """The ``keep`` column of a finished job: its per-job retention's bucket,
    or NULL for its task's own (trimmed by the task's index)."""
    return bucket if bucket is not None and is_own_bucket(bucket) else None


def complete(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    job_id: str,
    token: str,
    result: bytes,
    keep: str | None = None,
) -> bool:
    now = clock.now_ms()
    row = conn.execute(
        "UPDATE jobs SET state = 'completed', result = ?, finished_at = ?, error = NULL,"
        " traceback = NULL, token = NULL, lease_expires_at = NULL, keep = ?"
        f" WHERE id = ? AND token = ? AND state = 'active' RETURNING {_RUN}",
        (result, now, keep, job_id, token),
    ).fetchone()
    return _ended(conn, "completed", row, job_id, now)


def fail(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    job_id: str,
    token: str,
    error: str,
    traceback: str | None,
    retry_in_ms: int | None,
    keep: str | None = None,
) -> bool:
    """To ``delayed`` for a retry in ``retry_in_ms``, else ``failed`` (``keep``:
    its retention bucket, as ``complete`` takes it)."""
    now = clock.now_ms()
    if retry_in_ms is not None:
        # The retry moves run_at, which the run's wait is counted from: read first.
        row = conn.execute(
            f"SELECT {_RUN} FROM jobs WHERE id = ? AND token = ? AND state = 'active'",
            (job_id, token),
        ).fetchone()
        if row is None:
            return False
        conn.execute(
            f"UPDATE jobs SET state = 'delayed', run_at = ?, {adding.READY_AGAIN},"
            " error = ?, traceback = ?, token = NULL, lease_expires_at = NULL WHERE id = ?",
            (now + retry_in_ms, now + retry_in_ms, error, traceback, job_id),
        )
        _, queue, task, started_at, run_at = row
        tally.ran(
            conn,
            "retried",
            queue=queue,
            task=task,
            started_at=started_at,
            run_at=run_at,
            ended_at=now,
        )
        return True
    row = conn.execute(
        "UPDATE jobs SET state = 'failed', finished_at = ?, error = ?, traceback = ?,"
        " token = NULL, lease_expires_at = NULL, keep = ?"
        f" WHERE id = ? AND token = ? AND state = 'active' RETURNING {_RUN}",
        (now, error, traceback, keep, job_id, token),
    ).fetchone()
    return _ended(conn, "failed", row, job_id, now)


# What a run that ends tells: the job's parent, and what its statistics count.
_RUN = "parent_id, queue, task, started_at, run_at"


def _ended(
    conn: sqlite3.Connection,
    outcome: tally.Outcome,
    row: tuple[str | None, str, str, int, int] | None,
    job_id: str,
    now: int,
) -> bool:
    """Whether the run ended (the token was current: ``row``), counting it; a
    flow's child hands its outcome to its parent in the same transaction."""
    if row is None:
        return False
    parent_id, queue, task, started_at, run_at = row
    tally.ran(
        conn, outcome, queue=queue, task=task, started_at=started_at, run_at=run_at, ended_at=now
    )
    if parent_id is not None:
        flows.settle(conn, job_id, now)
    return True


def release(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    job_id: str,
    token: str,
    block_ms: int | None,
    block_group: bool,
) -> bool:
    """Back to waiting, the attempt not counted; with ``block_ms``, its queue
    (or, with ``block_group``, its group) starts nothing for that long."""
    row = conn.execute(
        "UPDATE jobs SET state = 'waiting', attempts = max(attempts - 1, 0),"
        " token = NULL, lease_expires_at = NULL, worker_id = NULL"
        " WHERE id = ? AND token = ? AND state = 'active' RETURNING queue, grp",
        (job_id, token),
    ).fetchone()
    if row is None:
        return False
    if block_ms is not None:
        queue, group = row
        held = limits.place(queue, group if block_group else None)  # a job's group is never '*'
        conn.execute(
            f"UPDATE {held.table} SET blocked_until = max(coalesce(blocked_until, 0), ?)"
            f" WHERE {held.where}",
            (clock.now_ms() + block_ms, *held.params),
        )
    return True


def report_progress(
    conn: sqlite3.Connection, clock: Clock, *, job_id: str, token: str, update: ProgressUpdate
) -> bool:
    now = clock.now_ms()
    owned = conn.execute(
        "UPDATE jobs SET progress = coalesce(?, progress),"
        " progress_detail = coalesce(?, progress_detail), logged = max(logged, ?)"
        " WHERE id = ? AND token = ? AND state = 'active'",
        (
            update.progress,
            None if update.detail is None else msgspec.json.encode(update.detail),
            int(bool(update.logs)),
            job_id,
            token,
        ),
    ).rowcount
    if owned and update.logs:
        conn.executemany(
            "INSERT INTO job_logs (job_id, at, message) VALUES (?, ?, ?)",
            [(job_id, now, message) for message in update.logs],
        )
    return owned == 1
