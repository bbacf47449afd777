"""Flows on SQLite: a finished child's outcome reaches its parent inside the
child's own transaction (``conveyor.flow`` has the policies), so there is
nothing to apply later: ``apply_outcomes`` finds nothing to do here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.values import NewJob


class Outcome(NamedTuple):
    """How a child ended, as its parent records it."""

    child_id: str
    task: str
    state: str  # completed, failed or cancelled
    result: bytes | None
    error: str | None
    policy: str  # its on_failure
    flow_id: str  # a parent by the same id but of another flow hears nothing


def settle(conn: sqlite3.Connection, child_id: str, now: int) -> None:
    """The child just finished (its row says how): tell its parent, if any."""
    row = conn.execute(
        "SELECT parent_id, task, state, result, error, on_failure, flow_id FROM jobs WHERE id = ?",
        (child_id,),
    ).fetchone()
    if row is not None and row[0] is not None:
        record(conn, row[0], Outcome(child_id, *row[1:]), now)


def record(conn: sqlite3.Connection, parent_id: str, outcome: Outcome, now: int) -> None:
    """Keep the child's outcome for its parent and apply it, once. A parent
    that is gone, or another job that took its id since, hears nothing."""
    parent = conn.execute("SELECT flow_id FROM jobs WHERE id = ?", (parent_id,)).fetchone()
    if parent is None or parent[0] != outcome.flow_id:
        return
    child, task, state, result, error, policy, _ = outcome
    values = (task, state, result, error, state != "completed" and policy == "ignore")
    if conn.execute(
        "UPDATE job_outcomes SET task = ?, state = ?, result = ?, error = ?, ignored = ?"
        " WHERE parent_id = ? AND child_id = ?",
        (*values, parent_id, child),
    ).rowcount:
        return  # retried by hand and finished again: the parent sees the new outcome
    conn.execute(
        "INSERT INTO job_outcomes (task, state, result, error, ignored, parent_id, child_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*values, parent_id, child),
    )
    # One child fewer unfinished, whatever the parent's state: a parent retried
    # by hand waits again for those still running.
    (parent_state, pending) = conn.execute(
        "UPDATE jobs SET pending = pending - 1 WHERE id = ? RETURNING state, pending",
        (parent_id,),
    ).fetchone()
    if parent_state != "waiting_children":
        return
    if state == "completed" or policy != "fail":
        if pending <= 0:
            conn.execute(
                "UPDATE jobs SET state = 'waiting', run_at = ? WHERE id = ?", (now, parent_id)
            )
        return
    conn.execute(
        "UPDATE jobs SET state = 'failed', finished_at = ?, error = ? WHERE id = ?",
        (now, f"child {child} {state}: {error}", parent_id),
    )
    settle(conn, parent_id, now)  # the parent may be a child itself


def existing(conn: sqlite3.Connection, jobs: Sequence[NewJob]) -> set[str]:
    """Which of ``jobs`` are already stored (a flow is added whole or not at all)."""
    found: set[str] = set()
    ids = [job.id for job in jobs]
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        found.update(
            id_
            for (id_,) in conn.execute(
                f"SELECT id FROM jobs WHERE id IN ({placeholders(len(chunk))})", chunk
            )
        )
    return found


def is_flow(jobs: Sequence[NewJob]) -> bool:
    return any(job.parent is not None or job.children for job in jobs)
