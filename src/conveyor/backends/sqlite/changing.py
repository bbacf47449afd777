"""Changing a job that has not started, on SQLite: its due time, priority,
order and arguments, in one writer transaction (``Managing.change_job``).
A move between waiting and delayed gets its event from the schema's trigger;
a change in place gets a ``changed`` event here."""

from __future__ import annotations

import sqlite3
from typing import Any

from conveyor.backends.managing import CHANGEABLE
from conveyor.backends.sqlite import adding, events
from conveyor.backends.values import JobChange
from conveyor.clock import Clock

__all__ = ["change"]


def change(
    conn: sqlite3.Connection, clock: Clock, *, job_id: str, change: JobChange
) -> bool | None:
    row = conn.execute(
        "SELECT state, seq, run_at, queue, task FROM jobs WHERE id = ?", (job_id,)
    ).fetchone()
    if row is None:
        return None
    state, seq, run_at, queue, task = row
    due = change.run_at_ms is not None
    if state not in CHANGEABLE or (due and state == "waiting_children"):
        return False
    now = clock.now_ms()
    moved, sets, params = state, [], list[Any]()
    if change.run_at_ms is not None:
        run_at = max(change.run_at_ms, now)
        moved = "delayed" if run_at > now else "waiting"
        sets += ["state = ?", "run_at = ?"]
        params += [moved, run_at]
    if change.lifo is not None:
        sets.append("seq = ?")
        params.append(_reordered(conn, seq, run_at, lifo=change.lifo))
    elif moved != state:  # its place among waiting jobs: by when it became ready
        sets.append(adding.READY_AGAIN)
        params.append(run_at)
    if change.priority is not None:
        sets.append("priority = ?")
        params.append(change.priority)
    if change.payload is not None:
        sets.append("payload = ?")
        params.append(change.payload)
    if sets:
        conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*params, job_id))
    if moved == state:  # a move has its event from the trigger
        events.changed(conn, job_id, queue, task, state, run_at)
    return True


def _reordered(conn: sqlite3.Connection, seq: int, ready_ms: int, *, lifo: bool) -> int:
    if not lifo:
        number = -seq if seq < 0 else seq % adding.ORDER_SHIFT
        return adding.order(ready_ms, number)
    (number,) = conn.execute(
        "UPDATE counters SET value = value + 1 WHERE name = 'seq' RETURNING value"
    ).fetchone()
    return adding.order(ready_ms, number, lifo=True)
