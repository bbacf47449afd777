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

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.stats import MINUTE_MS, Stats

__all__ = ["minutes", "totals"]

HOUR_MS = 3_600_000
_METRICS = frozenset((b"c", b"f", b"fx", b"r", b"s", b"x", b"rt", b"wt"))  # lib.lua's


def _stats(raw: dict[bytes, int]) -> Stats:
    """The ``Stats`` of lib.lua's metrics: a failure after a run (``f``) is
    one of the runs, with the completions and the retries."""
    done, ran_and_failed, retried = raw.get(b"c", 0), raw.get(b"f", 0), raw.get(b"r", 0)
    return Stats(
        completed=done,
        failed=ran_and_failed + raw.get(b"fx", 0),
        retried=retried,
        stalled=raw.get(b"s", 0),
        cancelled=raw.get(b"x", 0),
        runs=done + ran_and_failed + retried,
        run_ms=raw.get(b"rt", 0),
        wait_ms=raw.get(b"wt", 0),
    )


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
    found: defaultdict[int, dict[bytes, int]] = defaultdict(dict)
    for fields in hashes:
        for name, value in fields.items():
            minute, q, t, metric = name.split(b"\0")
            if not first <= int(minute) <= last or want[0] not in (None, q):
                continue
            if want[1] not in (None, t) or metric not in _METRICS:
                continue
            counted = found[int(minute) * MINUTE_MS]
            counted[metric] = counted.get(metric, 0) + int(value)
    return {at: _stats(counted) for at, counted in sorted(found.items())}


async def totals(conn: RedisConnection) -> dict[str, Stats]:
    client = await conn.connected()
    async with mapped_errors():
        fields = await client.hgetall(conn.keys.totals)
    found: defaultdict[str, dict[bytes, int]] = defaultdict(dict)
    for name, value in fields.items():
        queue, _, metric = name.rpartition(b"\0")
        if metric in _METRICS:
            found[queue.decode()][metric] = int(value)
    # totals keep counts only: no times, so no runs either
    return {q: msgspec.structs.replace(_stats(c), runs=0) for q, c in sorted(found.items())}
