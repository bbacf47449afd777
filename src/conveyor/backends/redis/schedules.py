"""Schedules in the store: each one's JSON in the ``schedules`` hash, the
last tick fired of each in ``schedule_ticks`` and how many it fired in
``schedule_counts`` (``tick-3.lua`` records both, never moving back, with
the tick's event).
"""

from __future__ import annotations

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.rows import schedules_from
from conveyor.backends.values import NewJob
from conveyor.cron import Fired, Schedule


async def save_schedule(conn: RedisConnection, *, schedule: Schedule) -> None:
    client = await conn.connected()
    async with mapped_errors():
        await client.hset(conn.keys.schedules, schedule.id, msgspec.json.encode(schedule))


async def remove_schedule(conn: RedisConnection, *, schedule_id: str) -> bool:
    client = await conn.connected()
    async with mapped_errors():
        removed = await client.hdel(conn.keys.schedules, schedule_id)
        await client.hdel(conn.keys.schedule_ticks, schedule_id)
        await client.hdel(conn.keys.schedule_counts, schedule_id)
    return bool(removed)


async def schedules(conn: RedisConnection) -> list[tuple[Schedule, Fired]]:
    client = await conn.connected()
    async with mapped_errors():
        specs = await client.hgetall(conn.keys.schedules)
        ticks = await client.hgetall(conn.keys.schedule_ticks) if specs else {}
        counts = await client.hgetall(conn.keys.schedule_counts) if specs else {}
    return schedules_from(
        (
            key.decode(errors="replace"),
            specs[key],
            None if ticks.get(key) is None else int(ticks[key]),
            int(counts.get(key, 0)),
        )
        for key in sorted(specs)
    )


async def mark_tick(
    conn: RedisConnection, *, schedule_id: str, tick_ms: int, fired: NewJob | None
) -> None:
    job_key = conn.keys.schedule_ticks if fired is None else conn.keys.job(fired.id)
    args = [schedule_id, tick_ms, "" if fired is None else fired.id, conn.offset]
    keys = [conn.keys.schedule_ticks, conn.keys.schedule_counts, job_key]
    await conn.run("tick", keys, args)
