"""Schedules in the SQLite store: one ``schedules`` row each, its spec as
JSON, the last tick fired and how many it fired (``conveyor.schedules``
decides when to fire).
"""

from __future__ import annotations

import sqlite3

import msgspec

from conveyor.backends.rows import schedules_from
from conveyor.backends.sqlite import events
from conveyor.backends.values import NewJob
from conveyor.cron import Fired, Schedule


def save_schedule(conn: sqlite3.Connection, *, schedule: Schedule) -> None:
    """Add the schedule, or replace the spec of the one by its id (keeping its last tick)."""
    conn.execute(
        "INSERT INTO schedules (id, spec) VALUES (?, ?)"
        " ON CONFLICT (id) DO UPDATE SET spec = excluded.spec",
        (schedule.id, msgspec.json.encode(schedule)),
    )


def remove_schedule(conn: sqlite3.Connection, *, schedule_id: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 1


def schedules(conn: sqlite3.Connection) -> list[tuple[Schedule, Fired]]:
    """Every readable schedule by id, with its last tick and count."""
    rows = conn.execute("SELECT id, spec, last_tick, ticks FROM schedules ORDER BY id")
    return schedules_from(rows.fetchall())


def mark_tick(
    conn: sqlite3.Connection, *, schedule_id: str, tick_ms: int, fired: NewJob | None
) -> None:
    """Note ``tick_ms`` as fired (its ``tick`` event with it); a later tick
    already noted stays."""
    moved = conn.execute(
        "UPDATE schedules SET last_tick = ?, ticks = ticks + ? WHERE id = ?"
        " AND coalesce(last_tick, -1) < ?",
        (tick_ms, int(fired is not None), schedule_id, tick_ms),
    ).rowcount
    if moved and fired is not None:
        events.ticked(conn, schedule_id, fired.id, fired.task, fired.queue)
