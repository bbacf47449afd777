"""Job statistics on SQLite: the ``job_stats`` and ``queue_totals`` tables
counted in the transaction of each outcome (by the writer for the runs that
end, ``tally.py``, and by a trigger of the schema for the rest), read by
minute, and the minutes past their age dropped."""

from __future__ import annotations

import sqlite3

from conveyor.stats import MINUTE_MS, Stats

__all__ = ["minutes", "totals", "trim"]

_COUNTS = "completed, failed, retried, stalled, cancelled"


def minutes(
    conn: sqlite3.Connection, since_ms: int, until_ms: int, queue: str | None, task: str | None
) -> dict[int, Stats]:
    where = "minute BETWEEN ? AND ?"
    params: list[int | str] = [since_ms // MINUTE_MS, until_ms // MINUTE_MS]
    for column, value in (("queue", queue), ("task", task)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    rows = conn.execute(
        "SELECT minute, sum(completed), sum(failed), sum(retried), sum(stalled), sum(cancelled),"
        f" sum(runs), sum(run_ms), sum(wait_ms) FROM job_stats WHERE {where} GROUP BY minute",
        params,
    )
    return {row[0] * MINUTE_MS: _stats(row[1:]) for row in rows}


def totals(conn: sqlite3.Connection) -> dict[str, Stats]:
    rows = conn.execute(f"SELECT queue, {_COUNTS} FROM queue_totals ORDER BY queue")
    return {row[0]: _stats(row[1:]) for row in rows}


def trim(conn: sqlite3.Connection, now_ms: int) -> None:
    """Drop the minutes older than the store's ``stats_max_age_ms``."""
    conn.execute(
        "DELETE FROM job_stats WHERE minute < (? - (SELECT value FROM counters"
        " WHERE name = 'stats_max_age_ms')) / 60000",
        (now_ms,),
    )


def _stats(row: tuple[int, ...]) -> Stats:
    completed, failed, retried, stalled, cancelled, *runs = row
    run_count, run_ms, wait_ms = runs or (0, 0, 0)
    return Stats(
        completed=completed,
        failed=failed,
        retried=retried,
        stalled=stalled,
        cancelled=cancelled,
        runs=run_count,
        run_ms=run_ms,
        wait_ms=wait_ms,
    )
