"""Removing many jobs of a queue on SQLite: the jobs are picked on a reader
(no write lock while an index is searched), then deleted in bounded batches,
each one writer transaction that re-checks each job (``_remove``), with a
gap between them, so a million-job drain never holds the store for long;
``drain``, ``obliterate`` and ``clean`` repeat it, and ``_forget`` ends an
obliteration once the queue has no job.
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
from conveyor.errors import BackendError, QueueBusy
from conveyor.job import JobState

__all__ = ["BATCH", "RETURNED", "clean", "drain", "forget_removed", "obliterate"]

BATCH = 500  # jobs per transaction (about 15 ms)
RETURNED = "id, queue, task, parent_id, state, on_failure, flow_id"
NEVER = 1 << 62  # as a count: no limit


def forget_removed(conn: sqlite3.Connection, clock: Clock, rows: Sequence[tuple[Any, ...]]) -> None:
    """After deleting jobs (``rows`` of ``RETURNED``): their events, and their
    parents told of children that had not finished."""
    events.removed(conn, [(job_id, queue, task) for job_id, queue, task, *_ in rows])
    now = clock.now_ms()
    for job_id, _, task, parent_id, state, policy, flow_id in rows:
        if parent_id is not None and not JobState(state).finished:
            outcome = flows.Outcome(job_id, task, "cancelled", None, "removed", policy, flow_id)
            flows.record(conn, parent_id, outcome, now)


def finished_batch(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    queue: str,
    state: str,
    before_ms: int,
    keep: int,
    limit: int,
) -> int:
    """Delete up to ``limit`` of ``queue``'s jobs finished in ``state`` before
    ``before_ms``, sparing the newest ``keep``: through the index of finished
    jobs (``queue, state, finished_at``), in the writer's transaction."""
    old = conn.execute(
        "SELECT id FROM (SELECT id, finished_at FROM jobs WHERE queue = ? AND state = ?"
        " AND finished_at IS NOT NULL ORDER BY finished_at DESC LIMIT -1 OFFSET ?)"
        " WHERE finished_at < ? LIMIT ?",
        (queue, state, keep, before_ms, limit),
    )
    return _remove(conn, clock, [job_id for (job_id,) in old], queue=queue, states=[state])


# What each state's partial index needs said (schema.sql): a waiting job is
# in one of two, by whether it has a group; a finished one has finished_at.
_INDEXED = {
    JobState.WAITING.value: ("grp IS NULL", "grp IS NOT NULL"),
    **{s.value: ("finished_at IS NOT NULL",) for s in JobState if s.finished},
}


def _some(
    conn: sqlite3.Connection, queue: str, states: Sequence[str], limit: int
) -> list[tuple[str, int]]:
    """Up to ``limit`` (id, enqueue time) of ``queue``'s jobs in ``states``,
    each state read through its own index. Run on a reader: a search through
    an index shared by every queue (delayed, active) holds no write lock."""
    found: list[tuple[str, int]] = []
    for state in states:
        for condition in _INDEXED.get(state, ("1",)):
            if len(found) >= limit:
                return found
            found += conn.execute(
                "SELECT id, created_at FROM jobs WHERE queue = ? AND state = ?"
                f" AND {condition} LIMIT ?",
                (queue, state, limit - len(found)),
            ).fetchall()
    return found


def _remove(
    conn: sqlite3.Connection,
    clock: Clock,
    ids: Sequence[str],
    *,
    queue: str,
    states: Sequence[str],
    created_before: int | None = None,
) -> int:
    """Delete those of ``ids`` still of ``queue`` and in ``states`` (and
    enqueued before ``created_before``), in the writer's transaction: what
    changed since it was picked (claimed, say) is left alone."""
    if not ids:
        return 0
    age = "" if created_before is None else f" AND created_at < {int(created_before)}"
    rows = conn.execute(
        f"DELETE FROM jobs WHERE id IN ({placeholders(len(ids))}) AND queue = ?"
        f" AND state IN ({placeholders(len(states))}){age} RETURNING {RETURNED}",
        (*ids, queue, *states),
    ).fetchall()
    forget_removed(conn, clock, rows)
    return len(rows)


async def _remove_all(backend: State, queue: str, states: Sequence[str]) -> int:
    """Every job of ``queue`` in ``states``: picked on a reader, deleted in
    batches, each its own transaction, with a gap between them."""
    removed, idle = 0, 0
    while picked := await backend.read(_some, queue, states, BATCH):
        started = time.monotonic()
        ids = [job_id for job_id, _ in picked]
        gone = await backend.write(_remove, backend.clock, ids, queue=queue, states=states)
        removed += gone
        idle = 0 if gone else idle + 1
        if idle >= 2:  # what it picks keeps changing first: leave it
            break
        await _yield_the_file(time.monotonic() - started)
    return removed


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
    if not await backend.write(_pause, queue=queue, force=force):
        return 0
    removed, idle_passes = 0, 0
    every = [s.value for s in JobState if force or s is not JobState.ACTIVE]
    while True:
        this_pass = await _remove_all(backend, queue, every)
        removed += this_pass
        idle_passes = 0 if this_pass else idle_passes + 1
        running = await backend.write(_forget, queue=queue)
        if running == 0:
            return removed
        if running > 0 and not force:
            raise QueueBusy(queue, running)
        if idle_passes >= 2:  # nothing removable, yet not empty: never spin on it
            raise BackendError(f"queue {queue!r} holds jobs that could not be removed")


def _pause(conn: sqlite3.Connection, *, queue: str, force: bool) -> bool:
    """Pause the queue (False, changing nothing: no such queue); refused,
    changing nothing, if any of its jobs runs and not ``force``."""
    row = conn.execute("SELECT paused FROM queues WHERE name = ?", (queue,)).fetchone()
    jobs, active = _counted(conn, queue)
    if row is None and not jobs:
        return False
    if active and not force:
        raise QueueBusy(queue, active)
    conn.execute(
        "INSERT INTO queues (name, paused) VALUES (?, 1)"
        " ON CONFLICT (name) DO UPDATE SET paused = 1",
        (queue,),
    )
    return True


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
        if state.finished:
            removed += await _clean_finished(backend, q, state.value, before, keep, limit - removed)
        else:
            removed += await _clean_unfinished(
                backend, q, state.value, before, keep, limit - removed
            )
        if removed >= limit:
            break
    return removed


async def _clean_finished(
    backend: State, queue: str, state: str, before: int, keep: int, limit: int
) -> int:
    removed = 0
    while removed < limit:
        want = min(BATCH, limit - removed)
        started = time.monotonic()
        gone = await backend.write(
            finished_batch,
            backend.clock,
            queue=queue,
            state=state,
            before_ms=before,
            keep=keep,
            limit=want,
        )
        removed += gone
        if gone < want:
            break
        await _yield_the_file(time.monotonic() - started)
    return removed


async def _clean_unfinished(
    backend: State, queue: str, state: str, before: int, keep: int, limit: int
) -> int:
    """Waiting and delayed jobs have no index by enqueue time: read them all
    on a reader, spare the newest ``keep``, delete the old in batches."""
    stamped = await backend.read(_some, queue, [state], NEVER)
    stamped.sort(key=lambda row: (row[1], row[0]), reverse=True)
    old = [job_id for job_id, at in stamped[keep:] if at < before][:limit]
    removed = 0
    for first in range(0, len(old), BATCH):
        started = time.monotonic()
        removed += await backend.write(
            _remove,
            backend.clock,
            old[first : first + BATCH],
            queue=queue,
            states=[state],
            created_before=before,
        )
        await _yield_the_file(time.monotonic() - started)
    return removed


def _queue_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT DISTINCT queue FROM job_counts")]
