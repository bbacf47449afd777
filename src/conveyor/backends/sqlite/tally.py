"""The statistics of runs that end, counted by the writer's transaction.

A worker's completions and failures are most of a store's writes, and most
of a write group's operations. Counting each in a trigger (two upserts per
job) cost about a fifth of the writer's time per job; instead the operations
that end a run (``finishing.py``) note it on their connection's ``Tally`` and
the writer adds the group's notes up and writes one upsert per minute, queue
and task, and one per queue, just before it commits: still in the
transaction of the outcomes, so none is seen without the other. The other
outcomes (stalls, cancels, a flow's parent failing) stay with the schema's
trigger, which leaves runs that end to this module.

An operation that fails is rolled back to its savepoint; ``mark`` and
``rewind`` drop its notes with it.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from conveyor.stats import MINUTE_MS

__all__ = ["Outcome", "Tally", "TallyingConnection", "ran"]

Outcome = Literal["completed", "failed", "retried"]
_COLUMN = {"completed": 0, "failed": 1, "retried": 2}

_ON = "(SELECT value FROM counters WHERE name = 'stats')"
_ADD_MINUTE = (
    "INSERT INTO job_stats (minute, queue, task, completed, failed, retried, stalled,"
    f" cancelled, run_ms, runs, wait_ms) SELECT ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ? WHERE {_ON}"
    " ON CONFLICT (minute, queue, task) DO UPDATE SET completed = completed"
    " + excluded.completed, failed = failed + excluded.failed, retried = retried"
    " + excluded.retried, run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs,"
    " wait_ms = wait_ms + excluded.wait_ms"
)
_ADD_TOTAL = (
    "INSERT INTO queue_totals (queue, completed, failed, retried, stalled, cancelled)"
    f" SELECT ?, ?, ?, ?, 0, 0 WHERE {_ON} ON CONFLICT (queue) DO UPDATE SET"
    " completed = completed + excluded.completed, failed = failed + excluded.failed,"
    " retried = retried + excluded.retried"
)


class Tally:
    """The runs ended by the open transaction: ``(minute, queue, task,
    outcome column, run ms, wait ms)``."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[tuple[int, str, str, int, int, int]] = []

    def add(
        self, minute: int, queue: str, task: str, outcome: Outcome, run: int, wait: int
    ) -> None:
        self._runs.append((minute, queue, task, _COLUMN[outcome], run, wait))

    def mark(self) -> int:
        return len(self._runs)

    def rewind(self, mark: int) -> None:
        del self._runs[mark:]

    def clear(self) -> None:
        self._runs.clear()

    def flush(self, conn: sqlite3.Connection) -> None:
        """Write the notes, added up, in ``conn``'s transaction (nothing when
        the store's statistics are off), and forget them."""
        if not self._runs:
            return
        minutes: dict[tuple[int, str, str], list[int]] = {}
        for minute, queue, task, column, run_ms, wait_ms in self._runs:
            row = minutes.setdefault((minute, queue, task), [0, 0, 0, 0, 0, 0])
            row[column] += 1
            row[3] += run_ms
            row[4] += 1
            row[5] += wait_ms
        self._runs.clear()
        queues: dict[str, list[int]] = {}  # the outcome counts of its minutes
        for (_, queue, _), row in minutes.items():
            total = queues.setdefault(queue, [0, 0, 0])
            for column in range(3):
                total[column] += row[column]
        conn.executemany(_ADD_MINUTE, [(*key, *row) for key, row in minutes.items()])
        conn.executemany(_ADD_TOTAL, [(queue, *total) for queue, total in queues.items()])


class TallyingConnection(sqlite3.Connection):
    """The writer's connection: a connection with the ``Tally`` of its open
    transaction."""

    tally: Tally


def ran(
    conn: sqlite3.Connection,
    outcome: Outcome,
    *,
    queue: str,
    task: str,
    started_at: int,
    run_at: int,
    ended_at: int,
) -> None:
    """Note a run that ended at ``ended_at`` (ms): its run time from its start
    and its wait from ``run_at`` (when it was ready) to its start."""
    if not isinstance(conn, TallyingConnection):
        raise TypeError("a run can end only in the writer's transaction")
    conn.tally.add(
        ended_at // MINUTE_MS,
        queue,
        task,
        outcome,
        max(ended_at - started_at, 0),
        max(started_at - run_at, 0),
    )
