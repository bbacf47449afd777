"""Leases on SQLite: renewing those of running jobs (the lease keeper, from
its own thread), finding those that expired, and reclaiming their jobs:
back to waiting with a stall counted, or failed past ``max_stalls``, each
with a line in its log. Renewal and reclaiming are writer transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from conveyor.backends.base import stalled_message
from conveyor.backends.sqlite import flows
from conveyor.backends.values import ReclaimResult
from conveyor.clock import Clock

EXTEND_TIMEOUT_S = 15.0  # a renewal waits out the writer's lock waits (10 s at most)


def extend_leases(
    conn: sqlite3.Connection, clock: Clock, leases: Sequence[tuple[str, str]], lease_ms: int
) -> list[tuple[str, str]]:
    """Renew each ``(job id, token)`` still current; return those that are not."""
    expires = clock.now_ms() + lease_ms
    lost = []
    for job_id, token in leases:
        cursor = conn.execute(
            "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND token = ? AND state = 'active'",
            (expires, job_id, token),
        )
        if cursor.rowcount == 0:
            lost.append((job_id, token))
    return lost


def expired_leases(conn: sqlite3.Connection, clock: Clock, *, limit: int) -> list[tuple[str, int]]:
    """Active jobs whose lease has expired, with its expiry, oldest first."""
    rows = conn.execute(
        "SELECT id, lease_expires_at FROM jobs WHERE state = 'active'"
        " AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?",
        (clock.now_ms(), limit),
    ).fetchall()
    return [(id_, expiry) for id_, expiry in rows]


def reclaim_expired(
    conn: sqlite3.Connection,
    clock: Clock,
    *,
    max_stalls: int,
    limit: int,
    suspects: Sequence[tuple[str, int]] | None,
) -> ReclaimResult:
    now = clock.now_ms()
    expired = _expired(conn, now, limit, suspects)
    requeue = [(id_, stalls) for id_, stalls in expired if stalls < max_stalls]
    dead = [(id_, stalls) for id_, stalls in expired if stalls >= max_stalls]
    conn.executemany(
        "UPDATE jobs SET state = 'waiting', stalls = stalls + 1, logged = 1,"
        " attempts = max(attempts - 1, 0), token = NULL, lease_expires_at = NULL,"
        " worker_id = NULL WHERE id = ?",
        [(id_,) for id_, _ in requeue],
    )
    conn.executemany(
        "UPDATE jobs SET state = 'failed', stalls = stalls + 1, finished_at = ?,"
        " logged = 1, error = 'stalled', token = NULL, lease_expires_at = NULL"
        " WHERE id = ?",
        [(now, id_) for id_, _ in dead],
    )
    for id_, _ in dead:
        flows.settle(conn, id_, now)
    conn.executemany(
        "INSERT INTO job_logs (job_id, at, message) VALUES (?, ?, ?)",
        [(id_, now, stalled_message(stalls + 1, max_stalls)) for id_, stalls in expired],
    )
    return ReclaimResult(requeued=[i for i, _ in requeue], failed=[i for i, _ in dead])


def _expired(
    conn: sqlite3.Connection, now: int, limit: int, suspects: Sequence[tuple[str, int]] | None
) -> list[tuple[str, int]]:
    """``(id, stalls)`` of the jobs to reclaim: the oldest expired, or those
    of ``suspects`` (id, expiry seen) whose lease is still that one, expired."""
    if suspects is None:
        rows = conn.execute(
            "SELECT id, stalls FROM jobs WHERE state = 'active' AND lease_expires_at < ?"
            " ORDER BY lease_expires_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [(id_, stalls) for id_, stalls in rows]
    expired: list[tuple[str, int]] = []
    for job_id, expiry in suspects[:limit]:
        expired += conn.execute(
            "SELECT id, stalls FROM jobs WHERE id = ? AND state = 'active'"
            " AND lease_expires_at = ? AND lease_expires_at < ?",
            (job_id, expiry, now),
        ).fetchall()
    return expired
