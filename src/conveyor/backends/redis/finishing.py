"""What the worker that owns a job writes about its run, each one script
fenced by the lease token (a stale token changes nothing): progress and log
lines while it runs, then how the run ends (``complete``, ``fail``, or
``release`` back to waiting). A finished flow child's outcome goes to the
outbox in the same script; ``flows.py`` applies it to the parent.
"""

from __future__ import annotations

import msgspec

from conveyor.backends.redis.connection import RedisConnection
from conveyor.backends.redis.record import retention_member
from conveyor.backends.redis.scripts import Code
from conveyor.backends.values import ProgressUpdate
from conveyor.job import Retention


def _tracked(retention: Retention, queue: str, job_id: str) -> str:
    """The retention member to record, or '' when nothing will ever be trimmed."""
    return retention_member(queue, job_id) if retention.limited else ""


async def report_progress(
    conn: RedisConnection, *, job_id: str, token: str, update: ProgressUpdate
) -> bool:
    keys = [conn.keys.job(job_id), conn.keys.logs(job_id)]
    args = [
        conn.offset,
        token,
        "" if update.progress is None else update.progress,
        "" if update.detail is None else msgspec.json.encode(update.detail),
        job_id,
        *update.logs,
    ]
    return await conn.fenced("progress", keys, args)


async def complete(
    conn: RedisConnection,
    *,
    job_id: str,
    token: str,
    result: bytes,
    retention: Retention,
    bucket: str | None = None,
) -> bool:
    identity = await conn.identity(job_id)
    if identity is None:
        return False
    queue, task = identity
    k = conn.keys
    keys = [
        k.job(job_id),
        k.state(queue, "active"),
        k.state(queue, "completed"),
        k.done(bucket or task, "completed"),
    ]
    lean = job_id in conn.lean  # no group or flow to tell: two keys fewer
    if not lean:
        keys += [k.queue(queue, "gactive"), k.outbox]
    args = [
        conn.offset,
        token,
        result,
        _tracked(retention, queue, job_id),
        job_id,
        "" if lean else "1",
    ]
    (code,) = await conn.run("complete", keys, args)
    if int(code) != Code.DONE:
        return False
    conn.forget(job_id)
    return True


async def fail(
    conn: RedisConnection,
    *,
    job_id: str,
    token: str,
    error: str,
    traceback: str | None,
    retry_in_ms: int | None,
    retention: Retention,
    bucket: str | None = None,
) -> bool:
    identity = await conn.identity(job_id)
    if identity is None:
        return False
    queue, task = identity
    k = conn.keys
    keys = [
        k.job(job_id),
        k.state(queue, "active"),
        k.state(queue, "delayed"),
        k.state(queue, "failed"),
        k.done(bucket or task, "failed"),
        k.queue(queue, "gactive"),
        k.outbox,
        k.marker(queue),
    ]
    retry = "" if retry_in_ms is None else retry_in_ms
    args = [
        conn.offset,
        token,
        error,
        traceback or "",
        retry,
        _tracked(retention, queue, job_id),
        job_id,
    ]
    if not await conn.fenced("fail", keys, args):
        return False
    conn.forget(job_id)
    return True


async def release(
    conn: RedisConnection,
    *,
    job_id: str,
    token: str,
    block_ms: int | None = None,
    block_group: bool = False,
) -> bool:
    identity = await conn.identity(job_id)
    if identity is None:
        return False
    queue = identity[0]
    k = conn.keys
    keys = [
        k.job(job_id),
        k.state(queue, "active"),
        k.state(queue, "waiting"),
        k.marker(queue),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.queue(queue, "gactive"),
        k.limits,
    ]
    args = [
        conn.offset,
        token,
        job_id,
        "" if block_ms is None else block_ms,
        int(block_group),
        queue,  # the hold's scope is built in the script: only it knows the job's group
    ]
    released = await conn.fenced("release", keys, args)
    conn.forget(job_id)
    return released
