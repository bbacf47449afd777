"""Reclaiming the jobs of lapsed leases: finding the leases expired by the
server's clock, then ``reclaim-8.lua`` per queue, which puts each job whose
lease is still expired back to waiting with a stall counted, or fails it
past ``max_stalls``. (Leases are renewed in ``renewal.py``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.record import retention_member
from conveyor.backends.values import ReclaimResult

Suspect = tuple[str, str, int | str]  # job id, task, the lease expiry seen ('' any)


async def expired_leases(conn: RedisConnection, *, limit: int) -> list[tuple[str, int]]:
    """Oldest first within each queue."""
    now = await conn.now()
    found: list[tuple[str, int]] = []
    for queue in await conn.queue_names():
        async with mapped_errors():
            leases = await conn.client.zrange(
                conn.keys.state(queue, "active"),
                0,
                f"({now}",
                byscore=True,
                offset=0,
                num=limit - len(found),
                withscores=True,
            )
        for member, expiry in leases:
            found.append((member.decode(), int(expiry)))
            conn.lease_queues[member.decode()] = queue
        if len(found) >= limit:
            break
    return found


async def reclaim_expired(
    conn: RedisConnection,
    *,
    max_stalls: int,
    limit: int,
    suspects: Sequence[tuple[str, int]] | None = None,
) -> ReclaimResult:
    if suspects is None:  # whatever has expired, whatever its expiry
        seen: list[tuple[str, int | str]] = [
            (job_id, "") for job_id, _ in await expired_leases(conn, limit=limit)
        ]
    else:
        seen = list(suspects[:limit])
    if not seen:
        return ReclaimResult(requeued=[], failed=[])
    requeued: list[str] = []
    failed: list[str] = []
    for queue, jobs in (await _by_queue(conn, seen)).items():
        back, dead = await _reclaim(conn, queue, jobs, max_stalls)
        requeued += back
        failed += dead
    return ReclaimResult(requeued=requeued, failed=failed)


async def _by_queue(
    conn: RedisConnection, seen: Sequence[tuple[str, int | str]]
) -> dict[str, list[Suspect]]:
    """The suspects by queue. A lease whose job's hash is gone (evicted,
    deleted) leaves its active set here, or it would fill every check's limit."""
    by_queue: dict[str, list[Suspect]] = {}
    identities = await conn.identities([job_id for job_id, _ in seen])
    orphans: list[tuple[str, str]] = []
    for (job_id, expiry), identity in zip(seen, identities, strict=True):
        if identity == ("", "") and job_id in conn.lease_queues:  # unreadable: its
            identity = (conn.lease_queues[job_id], "")  # queue is known, no retention
        if identity is not None and identity[0]:
            queue, task = identity
            by_queue.setdefault(queue, []).append((job_id, task, expiry))
        elif job_id in conn.lease_queues:
            orphans.append((conn.lease_queues[job_id], job_id))
    conn.lease_queues.clear()
    async with mapped_errors():
        for queue, job_id in orphans:
            await conn.client.zrem(conn.keys.state(queue, "active"), job_id)
    return by_queue


async def _reclaim(
    conn: RedisConnection, queue: str, jobs: Sequence[Suspect], max_stalls: int
) -> tuple[list[str], list[str]]:
    """Reclaim one queue's suspects whose lease is still expired: the jobs
    back to waiting and those failed."""
    k = conn.keys
    keys = [
        k.state(queue, "active"),
        k.state(queue, "waiting"),
        k.state(queue, "failed"),
        k.marker(queue),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.queue(queue, "gactive"),
        k.outbox,
    ]
    args: list[Any] = [conn.offset, max_stalls]
    for job_id, task, expiry in jobs:
        keys += [k.job(job_id), k.done(task, "failed"), k.logs(job_id)]
        args += [job_id, retention_member(queue, job_id), expiry]
    back, dead = await conn.run("reclaim", keys, args)
    return [i.decode() for i in back], [i.decode() for i in dead]
