"""Removing many jobs of a queue on SQLite: each call deletes one bounded
batch in one writer transaction (``remove_batch``), so a million-job drain
never holds the write lock for long; ``drain``, ``obliterate`` and ``clean``
repeat it, and ``forget`` ends an obliteration once the queue has no job.
Every removed job has its ``removed`` event; a flow's parent still waiting
for a removed child hears of it as cancelled, error ``removed``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from conveyor.backends.sqlite import events, flows
from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.state import State
from conveyor.clock import Clock
from conveyor.errors import QueueBusy
from conveyor.job import JobState

__all__ = ["BATCH", "RETURNED", "clean", "drain", "forget_removed", "obliterate", "remove_batch"]

BATCH = 500  # jobs per transaction (about 15 ms)
RETURNED = "id, queue, task, parent_id, state, on_failure, flow_id"
NEVER = 1 << 62  # a time after every job's (ms)


def forget_removed(conn: sqlite3.Connection, clock: Clock, rows: Sequence[tuple[Any, ...]]) -> None:
    """After deleting jobs (``rows`` of ``RETURNED``): their events, and their
    parents told of children that had not finished."""
    events.removed(conn, [(job_id, queue, task) for job_id, queue, task, *_ in rows])
    now = clock.now_ms()
    for job_id, _, task, parent_id, state, policy, flow_id in rows:
        if parent_id is not None and not JobState(state).finished:
            outcome = flows.Outcome(job_id, task, "cancelled", None, "removed", policy, flow_id)
            flows.record(conn, parent_id, outcome, now)


def remove_batch(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    queue: str,
    states: Sequence[str],
    before_ms: int | None = None,
    keep: int = 0,
    limit: int = BATCH,
) -> int:
    """Delete up to ``limit`` jobs of ``queue`` in ``states``; with
    ``before_ms`` or ``keep``, only those that finished (unfinished states:
    were created) before then, sparing the newest ``keep``. How many went."""
    if before_ms is None and not keep:
        return _remove(conn, clock, _some(conn, queue, states, limit))
    scope = f"queue = ? AND state IN ({placeholders(len(states))})"
    finished = all(JobState(state).finished for state in states)
    when = "finished_at" if finished else "created_at"
    if finished:  # as the index of finished jobs is made
        scope += " AND finished_at IS NOT NULL"
    old = conn.execute(
        f"SELECT id FROM (SELECT id, {when} AS at FROM jobs WHERE {scope}"
        f" ORDER BY {when} DESC LIMIT -1 OFFSET ?) WHERE at < ? LIMIT ?",
        (queue, *states, keep, NEVER if before_ms is None else before_ms, limit),
    )
    return _remove(conn, clock, [job_id for (job_id,) in old])


# What each state's partial index needs said (schema.sql): a waiting job is
# in one of two, by whether it has a group; a finished one has finished_at.
_INDEXED = {
    JobState.WAITING.value: ("grp IS NULL", "grp IS NOT NULL"),
    **{s.value: ("finished_at IS NOT NULL",) for s in JobState if s.finished},
}


def _some(conn: sqlite3.Connection, queue: str, states: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` ids of ``queue``'s jobs in ``states``, each state read
    through its own index (never a scan of the whole table)."""
    ids: list[str] = []
    for state in states:
        for condition in _INDEXED.get(state, ("1",)):
            if len(ids) >= limit:
                return ids
            ids += [
                job_id
                for (job_id,) in conn.execute(
                    f"SELECT id FROM jobs WHERE queue = ? AND state = ? AND {condition} LIMIT ?",
                    (queue, state, limit - len(ids)),
                )
            ]
    return ids


def _remove(conn: sqlite3.Connection, clock: Clock, ids: Sequence[str]) -> int:
    if not ids:
        return 0
    rows = conn.execute(
        f"DELETE FROM jobs WHERE id IN ({placeholders(len(ids))}) RETURNING {RETURNED}", ids
    ).fetchall()
    forget_removed(conn, clock, rows)
    return len(rows)


async def _remove_all(backend: State, queue: str, states: Sequence[str]) -> int:
    removed = 0
    while True:
        started = time.monotonic()
        gone = await backend.write(remove_batch, backend.clock, queue=queue, states=states)
        removed += gone
        if gone < BATCH:
            return removed
        await _yield_the_file(time.monotonic() - started)


async def _yield_the_file(held_s: float) -> None:
    """Between two batches, leave the file to other processes' writers as
    long as the batch held it: SQLite's busy wait backs off (up to 100 ms a
    try), and a writer that always finds the lock taken would wait out the
    whole drain (measured: one enqueue waited 1.1 s during a 50,000-job
    drain without this gap)."""
    await asyncio.sleep(max(held_s, 0.002))


async def drain(backend: State, *, queue: str, delayed: bool) -> int:
    return await _remove_all(backend, queue, ("waiting", "delayed") if delayed else ("waiting",))


async def obliterate(backend: State, *, queue: str, force: bool) -> int:
    """Pause the queue (no claim starts), refuse if jobs run (unless
    ``force``), delete its jobs batch by batch, then forget it."""
    active = await backend.write(_pause_and_count, queue=queue, force=force)
    if active is None:
        return 0
    removed = 0
    every = [s.value for s in JobState if force or s is not JobState.ACTIVE]
    while True:
        removed += await _remove_all(backend, queue, every)
        running = await backend.write(_forget, queue=queue)
        if running == 0:
            return removed
        if running > 0 and not force:
            raise QueueBusy(queue, running)


def _pause_and_count(conn: sqlite3.Connection, *, queue: str, force: bool) -> int | None:
    """The queue's active jobs, the queue paused (None: no such queue);
    refused, changing nothing, if any run and not ``force``."""
    row = conn.execute("SELECT paused FROM queues WHERE name = ?", (queue,)).fetchone()
    jobs, active = _counted(conn, queue)
    if row is None and not jobs:
        return None
    if active and not force:
        raise QueueBusy(queue, active)
    conn.execute(
        "INSERT INTO queues (name, paused) VALUES (?, 1)"
        " ON CONFLICT (name) DO UPDATE SET paused = 1",
        (queue,),
    )
    return int(active)


def _counted(conn: sqlite3.Connection, queue: str) -> tuple[int, int]:
    """The queue's jobs and its active ones, from the counts the schema's
    triggers keep (no scan of the jobs)."""
    jobs, active = conn.execute(
        "SELECT coalesce(sum(n), 0), coalesce(sum(n * (state = 'active')), 0)"
        " FROM job_counts WHERE queue = ?",
        (queue,),
    ).fetchone()
    return int(jobs), int(active)


def _forget(conn: sqlite3.Connection, *, queue: str) -> int:
    """Forget an emptied queue: 0 done; else -1 if it has jobs again (an
    enqueue came first), or how many of its jobs are active."""
    jobs, active = _counted(conn, queue)
    if jobs:
        return active or -1
    conn.execute("DELETE FROM queues WHERE name = ?", (queue,))
    conn.execute("DELETE FROM groups WHERE queue = ?", (queue,))
    conn.execute("DELETE FROM job_counts WHERE queue = ?", (queue,))
    conn.execute(
        "DELETE FROM rate_log WHERE scope = ? OR scope BETWEEN ? AND ?",
        (queue, f"{queue}\0", f"{queue}\1"),
    )
    return 0


async def clean(
    backend: State,
    *,
    queue: str | None,
    state: JobState,
    older_than_ms: int,
    keep: int,
    limit: int,
) -> int:
    before = backend.clock.now_ms() - older_than_ms
    queues = [queue] if queue is not None else await backend.read(_queue_names)
    removed = 0
    for q in queues:
        while removed < limit:
            want = min(BATCH, limit - removed)
            started = time.monotonic()
            gone = await backend.write(
                remove_batch,
                backend.clock,
                queue=q,
                states=[state.value],
                before_ms=before,
                keep=keep,
                limit=want,
            )
            removed += gone
            if gone < want:
                break
            await _yield_the_file(time.monotonic() - started)
    return removed


def _queue_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT DISTINCT queue FROM job_counts")]
