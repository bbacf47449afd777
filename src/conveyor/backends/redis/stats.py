"""Job statistics on Redis: the hashes lib.lua's ``tally`` counts outcomes
in, in the script that makes each outcome: one per hour (``Keys.stats``,
named by the hour the caller's clock was in, expiring after the app's
``stats_max_age_s``) with fields ``minute NUL queue NUL task NUL metric``,
and the totals per queue (``Keys.totals``). A minute is the server's, and
may sit in the hash of the hour before or after it (the caller's clock
against the server's): a read takes an hour either side and keeps the
minutes asked for."""

from __future__ import annotations

from collections import defaultdict

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.stats import MINUTE_MS, Stats

__all__ = ["minutes", "totals"]

HOUR_MS = 3_600_000
_METRICS = {
    b"c": "completed",
    b"f": "failed",
    b"r": "retried",
    b"s": "stalled",
    b"x": "cancelled",
    b"rn": "runs",
    b"rt": "run_ms",
    b"wt": "wait_ms",
}


async def minutes(
    conn: RedisConnection, since_ms: int, until_ms: int, queue: str | None, task: str | None
) -> dict[int, Stats]:
    first, last = since_ms // MINUTE_MS, until_ms // MINUTE_MS
    hours = range(since_ms // HOUR_MS - 1, until_ms // HOUR_MS + 2)
    client = await conn.connected()
    async with mapped_errors(), client.pipeline(transaction=False) as pipe:
        for hour in hours:
            pipe.hgetall(conn.keys.stats(hour))
        hashes = await pipe.execute()
    want = (None if queue is None else queue.encode(), None if task is None else task.encode())
    found: defaultdict[int, dict[str, int]] = defaultdict(dict)
    for fields in hashes:
        for name, value in fields.items():
            minute, q, t, metric = name.split(b"\0")
            if not first <= int(minute) <= last or want[0] not in (None, q):
                continue
            if want[1] not in (None, t) or metric not in _METRICS:
                continue
            counted = found[int(minute) * MINUTE_MS]
            key = _METRICS[metric]
            counted[key] = counted.get(key, 0) + int(value)
    return {at: Stats(**counted) for at, counted in sorted(found.items())}


async def totals(conn: RedisConnection) -> dict[str, Stats]:
    client = await conn.connected()
    async with mapped_errors():
        fields = await client.hgetall(conn.keys.totals)
    found: defaultdict[str, dict[str, int]] = defaultdict(dict)
    for name, value in fields.items():
        queue, _, metric = name.rpartition(b"\0")
        if metric in _METRICS:
            found[queue.decode()][_METRICS[metric]] = int(value)
    return {queue: Stats(**counted) for queue, counted in sorted(found.items())}
