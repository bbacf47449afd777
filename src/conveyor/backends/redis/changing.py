"""Changing a job that has not started, on Redis: one script
(``change-7.lua``) checks its state and applies the whole change, or none
of it (``Managing.change_job``)."""

from __future__ import annotations

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.record import identity_of, with_payload
from conveyor.backends.values import JobChange

__all__ = ["change"]


async def change(conn: RedisConnection, *, job_id: str, change: JobChange) -> bool | None:
    client = await conn.connected()
    async with mapped_errors():
        data = await client.hget(conn.keys.job(job_id), "data")
    if data is None:
        return None
    queue, _ = identity_of(data)
    k = conn.keys
    keys = [
        k.job(job_id),
        k.state(queue, "waiting"),
        k.state(queue, "delayed"),
        k.marker(queue),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.seq,
    ]
    args = [
        conn.offset,
        job_id,
        _or_empty(change.run_at_ms),
        _or_empty(change.priority),
        "" if change.lifo is None else int(change.lifo),
        b"" if change.payload is None else with_payload(data, change.payload),
    ]
    done = int(await conn.run("change", keys, args))
    return None if done < 0 else done == 1


def _or_empty(value: int | None) -> int | str:
    return "" if value is None else value
