"""Flows on SQLite: a finished child's outcome reaches its parent inside the
child's own transaction (``conveyor.flow`` has the policies), so there is
nothing to apply later: ``apply_outcomes`` finds nothing to do here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from conveyor.backends.base import NewJob


def settle(conn: sqlite3.Connection, child_id: str, now: int) -> None:
    """The child just finished (its row says how): tell its parent, if any."""
    row = conn.execute(
        "SELECT parent_id, on_failure, task, state, result, error FROM jobs WHERE id = ?",
        (child_id,),
    ).fetchone()
    if row is not None and row[0] is not None:
        parent_id, policy, task, state, result, error = row
        record(conn, parent_id, child_id, task, state, result, error, policy, now)


def record(
    conn: sqlite3.Connection, parent_id: str, child_id: str, task: str, state: str,
    result: bytes | None, error: str | None, policy: str, now: int,
) -> None:  # fmt: skip
    """Keep the child's outcome for its parent and apply it, once."""
    ignored = state != "completed" and policy == "ignore"
    values = (task, state, result, error, ignored)
    if conn.execute(
        "UPDATE job_outcomes SET task = ?, state = ?, result = ?, error = ?, ignored = ?"
        " WHERE parent_id = ? AND child_id = ?",
        (*values, parent_id, child_id),
    ).rowcount:
        return  # retried by hand and finished again: the parent sees the new outcome
    conn.execute(
        "INSERT INTO job_outcomes (task, state, result, error, ignored, parent_id, child_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*values, parent_id, child_id),
    )
    if state == "completed" or policy != "fail":
        conn.execute(
            "UPDATE jobs SET pending = pending - 1, run_at = ?,"
            " state = CASE WHEN pending <= 1 THEN 'waiting' ELSE state END"
            " WHERE id = ? AND state = 'waiting_children'",
            (now, parent_id),
        )
        return
    failed = conn.execute(
        "UPDATE jobs SET state = 'failed', finished_at = ?, error = ?"
        " WHERE id = ? AND state = 'waiting_children'",
        (now, f"child {child_id} {state}: {error}", parent_id),
    ).rowcount
    if failed:
        settle(conn, parent_id, now)  # the parent may be a child itself


def existing(conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> set[str]:
    """Which of ``jobs`` are already stored (a flow is added whole or not at all)."""
    found: set[str] = set()
    ids = [job.id for job in jobs]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        found.update(id_ for (id_,) in conn.execute(
            f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", chunk
        ))  # fmt: skip
    return found


def is_flow(jobs: Sequence[NewJob]) -> bool:
    return any(job.parent is not None or job.children for job in jobs)
