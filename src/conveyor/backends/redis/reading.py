"""Reading jobs, queues and workers for inspection: plain reads and
pipelines, no script and nothing changed. A job is read as one ``HMGET`` of
``record.FIELDS``; a page of a state merges the queues' sets in the order
their scores give, grouped waiting jobs included.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio.cluster import RedisCluster

from conveyor.backends.redis import claims
from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.record import FIELDS, job_from_fields, kids_of
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.job import Job, JobState, LogEntry, from_ms


async def get_job(conn: RedisConnection, *, job_id: str) -> Job | None:
    jobs = await _jobs(conn, [job_id])
    return jobs[0] if jobs else None


async def _jobs(conn: RedisConnection, job_ids: Sequence[str]) -> list[Job]:
    """The jobs of ``job_ids`` that exist, in that order."""
    client = await conn.connected()
    async with mapped_errors(), client.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(conn.keys.job(job_id), FIELDS)
        rows = await pipe.execute()
    found = zip(job_ids, rows, strict=True)
    return [job_from_fields(row, job_id)[0] for job_id, row in found if row[0] is not None]


async def children_of(conn: RedisConnection, *, job_id: str, limit: int) -> list[Job]:
    client = await conn.connected()
    async with mapped_errors():
        data = await client.hget(conn.keys.job(job_id), "data")
    if data is None:
        return []
    kids, found, read = kids_of(data), list[Job](), 0
    while len(found) < limit and read < len(kids):  # read on past children that are gone
        want = limit - len(found)
        found += await _jobs(conn, kids[read : read + want])
        read += want
    return found


async def get_logs(conn: RedisConnection, *, job_id: str) -> list[LogEntry]:
    client = await conn.connected()
    async with mapped_errors():
        lines = await client.lrange(conn.keys.logs(job_id), 0, -1)
    entries = []
    for line in lines:
        at, _, message = line.decode().partition(":")
        entries.append(LogEntry(at=from_ms(int(at)), message=message))
    return entries


async def list_jobs(
    conn: RedisConnection, *, queue: str | None, state: JobState, offset: int, limit: int
) -> list[Job]:
    queues = [queue] if queue is not None else await conn.queue_names()
    newest_first = state.finished
    picked: list[tuple[float, str]] = []
    async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.zrange(
                conn.keys.state(q, state),
                0,
                offset + limit - 1,
                desc=newest_first,
                withscores=True,
            )
        for ranked in await pipe.execute():
            picked += [(s, m.decode()) for m, s in ranked]
    if state == JobState.WAITING:
        picked += await _grouped_waiting(conn, queues, offset + limit)
    # The order ZRANGE has (REV also reverses the member order of equal
    # scores), so every page is a slice of the same order.
    picked.sort(reverse=newest_first)
    return await _jobs(conn, [job_id for _, job_id in picked[offset : offset + limit]])


async def _grouped_waiting(
    conn: RedisConnection, queues: Sequence[str], most: int
) -> list[tuple[float, str]]:
    """The first ``most`` waiting jobs of every group, scored as waiting jobs
    without a group are (priority, then FIFO), to merge with them."""
    async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.zrange(conn.keys.queue(q, "groups"), 0, -1)
        groups = await pipe.execute()
    wanted = [
        (q, name.decode(), most) for q, names in zip(queues, groups, strict=True) for name in names
    ]
    return [(c.score, c.id) for jobs in await claims.first_of_groups(conn, wanted) for c in jobs]


async def queues(conn: RedisConnection) -> list[QueueInfo]:
    names = await conn.queue_names()
    async with mapped_errors():
        paused = await conn.client.hgetall(conn.keys.queues)
        async with conn.client.pipeline(transaction=False) as pipe:
            for name in names:
                for state in JobState:
                    pipe.zcard(conn.keys.state(name, state))
                pipe.zcard(conn.keys.queue(name, "gwaiting"))
            counts = await pipe.execute()
    states = list(JobState)
    width = len(states) + 1
    infos = []
    for i, name in enumerate(names):
        per_state = {s: counts[i * width + j] for j, s in enumerate(states)}
        per_state[JobState.WAITING] += counts[i * width + len(states)]  # grouped ones
        infos.append(
            QueueInfo(name=name, paused=paused.get(name.encode()) == b"1", counts=per_state)
        )
    return infos


async def workers(conn: RedisConnection, *, seen_within_ms: int) -> list[WorkerInfo]:
    client = await conn.connected()
    since = await conn.now() - seen_within_ms
    async with mapped_errors():
        raw = await client.hgetall(conn.keys.workers)
    infos = [msgspec.json.decode(v, type=WorkerInfo) for v in raw.values()]
    return sorted((w for w in infos if w.last_seen_ms >= since), key=lambda w: w.id)


async def memory_bytes(conn: RedisConnection) -> tuple[int | None, int | None]:
    """``used_memory`` and ``maxmemory`` (0 means none: None here) of the
    server holding the namespace (on a Cluster, the node of its slot)."""
    client = await conn.connected()
    async with mapped_errors():
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(conn.keys.workers)
            info = await client.info("memory", target_nodes=node)
        else:
            info = await client.info("memory")
    used, limit = int(info.get("used_memory", -1)), int(info.get("maxmemory", 0))
    return (used if used >= 0 else None), (limit or None)
