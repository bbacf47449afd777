"""The embedded SQLite job store, part two: reading and managing jobs and queues.

The module docstring of ``transitions.py`` describes the store as a whole: the
URL, the one writer thread, and how idle workers wait.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import msgspec

from conveyor.backends.rows import schedules_from
from conveyor.backends.sqlite import adding, flows, limits, reading
from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.transitions import RETRY_BATCH, SQLiteTransitions
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.cron import Schedule
from conveyor.job import ChildOutcome, Job, JobState, LogEntry
from conveyor.limits import Limits, Rate

__all__ = ["SQLiteBackend"]


class SQLiteBackend(SQLiteTransitions):
    # -- inspection ------------------------------------------------------------

    async def get_job(self, *, job_id: str) -> Job | None:
        return await self._read(reading.get_job, job_id=job_id)

    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        return await self._read(reading.get_logs, job_id=job_id)

    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        return await self._read(
            reading.list_jobs, queue=queue, state=state, offset=offset, limit=limit
        )

    async def queues(self) -> list[QueueInfo]:
        return await self._read(reading.queues)

    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        return await self._read(reading.child_outcomes, parent_id=parent_id)

    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        since = self.clock.now_ms() - seen_within_ms
        return await self._read(reading.workers, seen_since_ms=since)

    # -- administration ----------------------------------------------------------

    async def set_paused(self, *, queue: str, paused: bool) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO queues (name, paused) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
                (queue, int(paused)),
            )

        await self._write(op)
        self._wakeup.set()

    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            limits.set_limits(conn, queue=queue, group=group, max_active=max_active, rate=rate)

        await self._write(op)
        self._wakeup.set()

    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        def op(conn: sqlite3.Connection) -> dict[str | None, Limits]:
            return limits.get_limits(conn, queue=queue)

        return await self._read(op)

    async def retry_jobs(self, *, job_ids: Sequence[str] | None, queue: str | None) -> int:
        def op(conn: sqlite3.Connection) -> int:
            now = self.clock.now_ms()
            if job_ids is not None:
                where = f"id IN ({placeholders(len(job_ids))}) AND state IN ('failed', 'cancelled')"
                params: tuple[str, ...] = tuple(job_ids)
            else:
                where = "state = 'failed' AND finished_at IS NOT NULL" + (
                    " AND queue = ?" if queue is not None else ""
                )
                params = (queue,) if queue is not None else ()
            ids = [
                id_
                for (id_,) in conn.execute(
                    f"SELECT id FROM jobs WHERE {where} LIMIT {RETRY_BATCH}", params
                )
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
                " worker_id = NULL WHERE id = ?",
                [
                    (adding.order(now, last - len(ids) + 1 + i), now, id_)
                    for i, id_ in enumerate(ids)
                ],
            )
            return len(ids)

        moved = total = await self._write(op)
        while job_ids is None and moved == RETRY_BATCH:  # bounded transactions (FAILURES #12)
            moved = await self._write(op)
            total += moved
        self._wakeup.set()
        return total

    async def cancel(self, *, job_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = self.clock.now_ms()
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

        return await self._write(op)

    async def remove(self, *, job_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM jobs WHERE id = ? AND state != 'active'"
                " RETURNING parent_id, task, state, on_failure, flow_id",
                (job_id,),
            ).fetchone()
            if row is None:
                return False
            parent_id, task, state, policy, flow_id = row
            if parent_id is not None and not JobState(state).finished:  # its parent waits for it
                outcome = flows.Outcome(job_id, task, "cancelled", None, "removed", policy, flow_id)
                flows.record(conn, parent_id, outcome, self.clock.now_ms())
            return True

        return await self._write(op)

    async def promote(self, *, job_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = self.clock.now_ms()
            cursor = conn.execute(
                f"UPDATE jobs SET state = 'waiting', run_at = ?, {adding.READY_AGAIN}"
                " WHERE id = ? AND state = 'delayed'",
                (now, now, job_id),
            )
            return cursor.rowcount == 1

        promoted = await self._write(op)
        self._wakeup.set()
        return promoted

    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        scope = "state = ? AND finished_at IS NOT NULL" + (
            " AND queue = ?" if queue is not None else ""
        )
        params = (state.value, queue) if queue is not None else (state.value,)

        def op(conn: sqlite3.Connection) -> int:
            # Skip the newest ``keep``, then delete what is old enough.
            return conn.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM (SELECT id, finished_at FROM jobs"
                f" WHERE {scope} ORDER BY finished_at DESC LIMIT -1 OFFSET ?)"
                " WHERE finished_at < ? LIMIT ?)",
                (*params, keep, self.clock.now_ms() - older_than_ms, limit),
            ).rowcount

        return await self._write(op)

    # -- schedules ---------------------------------------------------------------

    async def save_schedule(self, *, schedule: Schedule) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO schedules (id, spec) VALUES (?, ?)"
                " ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
                (schedule.id, msgspec.json.encode(schedule)),
            )

        await self._write(op)

    async def remove_schedule(self, *, schedule_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 1

        return await self._write(op)

    async def schedules(self) -> list[tuple[Schedule, int | None]]:
        def op(conn: sqlite3.Connection) -> list[tuple[Schedule, int | None]]:
            rows = conn.execute("SELECT id, spec, last_tick FROM schedules ORDER BY id")
            return schedules_from(rows.fetchall())

        return await self._read(op)

    async def mark_tick(self, *, schedule_id: str, tick_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE schedules SET last_tick = max(coalesce(last_tick, ?), ?) WHERE id = ?",
                (tick_ms, tick_ms, schedule_id),
            )

        await self._write(op)

    async def now_ms(self) -> int:
        return self.clock.now_ms()
