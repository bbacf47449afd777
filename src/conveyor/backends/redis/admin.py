"""Managing jobs and queues: pausing, retrying, cancelling, removing,
promoting, cleaning and trimming finished jobs, and the workers' heartbeats.

Each job moves in its own fenced script, so a bulk action (retrying every
failed job, cleaning) is many small atomic steps, in bounded batches: a job
that changed meanwhile is skipped, never moved twice.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import msgspec

from conveyor.backends.managing import RETRIED, WorkerCommand, worker_command
from conveyor.backends.redis import draining
from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.record import retention_member
from conveyor.backends.redis.scripts import states_arg
from conveyor.backends.values import WorkerInfo
from conveyor.job import JobState, Retention

BATCH = 1000  # jobs per round of bulk retries and cleaning
TRIM_LOCK_MS = 30_000  # a trimmer that died keeps others out this long at most


async def set_paused(conn: RedisConnection, *, queue: str, paused: bool) -> None:
    client = await conn.connected()
    async with mapped_errors(), client.pipeline(transaction=False) as pipe:
        pipe.hset(conn.keys.queues, queue, "1" if paused else "0")
        if not paused:
            pipe.rpush(conn.keys.marker(queue), "1")
        await pipe.execute()


async def retry_jobs(
    conn: RedisConnection,
    *,
    job_ids: Sequence[str] | None,
    queue: str | None,
    states: Sequence[JobState] = RETRIED,
) -> int:
    if job_ids is not None:
        return await _retry(conn, job_ids, states)
    moved = 0
    for q in [queue] if queue is not None else await conn.queue_names():
        while True:  # bounded batches; each job moves in its own script
            async with mapped_errors():
                failed = await conn.client.zrange(conn.keys.state(q, "failed"), 0, BATCH - 1)
            if not failed:
                break
            done = await _retry(conn, [m.decode() for m in failed], (JobState.FAILED,))
            moved += done
            if done == 0:  # nothing movable (changed under us): do not spin
                break
    return moved


async def _retry(conn: RedisConnection, job_ids: Sequence[str], states: Sequence[JobState]) -> int:
    k = conn.keys
    allowed = states_arg(states)

    async def one(job_id: str) -> bool:
        identity = await conn.identity(job_id)
        if identity is None:
            return False
        q, task = identity
        keys = [
            k.job(job_id),
            k.state(q, "failed"),
            k.state(q, "cancelled"),
            k.state(q, "waiting"),
            k.marker(q),
            k.done(task, "failed"),
            k.done(task, "cancelled"),
            k.queue(q, "gwaiting"),
            k.queue(q, "groups"),
            k.state(q, "waiting_children"),
            k.state(q, "completed"),
            k.done(task, "completed"),
        ]
        args = [conn.offset, retention_member(q, job_id), allowed, job_id]
        return await conn.fenced("retry", keys, args)

    return sum(await asyncio.gather(*(one(job_id) for job_id in job_ids)))


async def cancel(
    conn: RedisConnection, *, job_id: str, reason: str = "cancelled", expired_only: bool = False
) -> bool:
    """Cancel an unfinished job, with ``reason`` as its error (with
    ``expired_only``: only a waiting job past its TTL deadline)."""
    identity = await conn.identity(job_id)
    if identity is None:
        return False
    queue, task = identity
    k = conn.keys
    keys = [
        k.job(job_id),
        k.state(queue, "waiting"),
        k.state(queue, "delayed"),
        k.state(queue, "active"),
        k.state(queue, "cancelled"),
        k.done(task, "cancelled"),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.queue(queue, "gactive"),
        k.state(queue, "waiting_children"),
        k.outbox,
    ]
    args = [
        conn.offset,
        retention_member(queue, job_id),
        job_id,
        reason,
        "1" if expired_only else "",
    ]
    return await conn.fenced("cancel", keys, args)


async def remove(conn: RedisConnection, *, job_id: str) -> bool:
    identity = await conn.identity(job_id)
    return identity is not None and await draining.remove_jobs(conn, identity[0], [job_id]) == 1


async def promote(conn: RedisConnection, *, job_id: str) -> bool:
    identity = await conn.identity(job_id)
    if identity is None:
        return False
    queue = identity[0]
    k = conn.keys
    keys = [
        k.state(queue, "delayed"),
        k.state(queue, "waiting"),
        k.marker(queue),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.job(job_id),
    ]
    promoted, _ = await conn.run("promote", keys, [conn.offset, 1, job_id])
    return bool(promoted)


async def trim_finished(
    conn: RedisConnection, *, task: str, state: JobState, retention: Retention, limit: int
) -> int | None:
    """Two script calls: one takes the task's trim lock and picks the jobs
    beyond retention, the next deletes them (re-checking each) and lets go."""
    if not retention.limited:
        return 0
    k = conn.keys
    lock, done = k.trim_lock(task, state), k.done(task, state)
    token = os.urandom(8).hex()
    count = "" if retention.max_count is None else retention.max_count
    age = "" if retention.max_age_s is None else int(retention.max_age_s * 1000)
    args: list[Any] = [conn.offset, token, TRIM_LOCK_MS, count, age, limit]
    picked = await conn.run("overflow", [lock, done], args)
    if not picked:
        return None
    cutoff, members = picked
    if not members:
        return 0
    keys, args = [lock, done], [token, state.value, count, cutoff]
    for member in members:
        queue, _, job_id = member.decode().partition("\0")
        keys += [k.job(job_id), k.logs(job_id), k.state(queue, state), k.outcomes(job_id)]
        args += [member, job_id]
    return int(await conn.run("trim", keys, args))


async def record_worker(
    conn: RedisConnection, *, worker: WorkerInfo | None, worker_id: str
) -> WorkerCommand | None:
    """The heartbeat, and the command left for the worker taken, in one
    MULTI (its keys share the namespace's slot)."""
    client = await conn.connected()
    k = conn.keys
    async with mapped_errors(), client.pipeline(transaction=True) as pipe:
        if worker is None:
            pipe.hdel(k.workers, worker_id)
        else:
            pipe.hset(k.workers, worker_id, msgspec.json.encode(worker))
        pipe.hget(k.worker_commands, worker_id)
        pipe.hdel(k.worker_commands, worker_id)
        _, taken, _ = await pipe.execute()
    return None if worker is None or taken is None else worker_command(taken)


async def command_worker(conn: RedisConnection, *, worker_id: str, command: WorkerCommand) -> bool:
    done = await conn.run(
        "command", [conn.keys.workers, conn.keys.worker_commands], [worker_id, command]
    )
    return bool(done)


async def dedup_key(conn: RedisConnection, *, key: str, release: bool) -> str | None:
    """The job holding the dedup ``key`` (None: free); with ``release``, freed too."""
    owner = await conn.run("dedup", [conn.keys.dedup(key)], [conn.offset, int(release)])
    return None if owner is None else owner.decode()
