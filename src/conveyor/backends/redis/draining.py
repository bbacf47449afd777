"""Removing many jobs of a queue on Redis: ``remove_jobs`` deletes a batch of
them in one script (``remove-11.lua``, re-checking each job's state there),
and ``remove``, ``clean``, ``drain`` and ``obliterate`` pick the batches.
``obliterate`` ends with ``forget-17.lua``, which forgets the queue only once
its sets are empty, so a job enqueued meanwhile is never left half-gone.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.keys import FINISHED
from conveyor.errors import BackendError, QueueBusy
from conveyor.job import JobState

__all__ = ["BATCH", "clean", "drain", "obliterate", "remove_jobs"]

BATCH = 200  # jobs removed per script call: each a short step (about 8 ms)
_STATES = ("waiting", "delayed", "active", "completed", "failed", "cancelled", "waiting_children")


def _queue_keys(conn: RedisConnection, queue: str) -> list[str]:
    k = conn.keys
    return [
        *(k.state(queue, s) for s in _STATES),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.queue(queue, "gactive"),
        k.outbox,
    ]


async def remove_jobs(
    conn: RedisConnection,
    queue: str,
    job_ids: Sequence[str],
    *,
    states: Sequence[JobState] = (),
    before_ms: int | None = None,
    force: bool = False,
    listed: bool = False,
) -> int:
    """Delete those of ``job_ids`` (of ``queue``) in one of ``states`` (none
    given: any) and finished, or if unfinished created, before ``before_ms``;
    active ones only with ``force``. One script: atomic. How many went.
    ``listed``: the ids come from the queue's own sets, so a job whose
    record cannot be read goes too (it cannot say its queue)."""
    found = [
        (job_id, identity[1])
        for job_id, identity in zip(job_ids, await conn.identities(job_ids), strict=True)
        if identity is not None and (identity[0] == queue or (listed and identity == ("", "")))
    ]
    if not found:
        return 0
    k = conn.keys
    keys = _queue_keys(conn, queue)
    for job_id, task in found:
        keys += [k.job(job_id), k.logs(job_id), k.outcomes(job_id)]
        keys += [k.done(task, s) for s in FINISHED]
    allowed = "," + ",".join(s.value for s in states) + "," if states else ""
    before = "" if before_ms is None else before_ms
    args = [conn.offset, queue, allowed, before, int(force), *(job_id for job_id, _ in found)]
    return int(await conn.run("remove", keys, args))


async def _members(
    conn: RedisConnection, queue: str, state: str, count: int
) -> list[tuple[str, str, bytes]]:
    """Up to ``count`` entries of one of the queue's sets, as (id, set, member):
    a waiting job's in both its ungrouped and grouped orders."""
    k = conn.keys
    key = k.state(queue, state)
    async with mapped_errors():
        found = [(m.decode(), key, m) for m in await conn.client.zrange(key, 0, count - 1)]
        if state == "waiting" and len(found) < count:
            grouped = k.queue(queue, "gwaiting")
            members = await conn.client.zrange(grouped, 0, count - len(found) - 1)
            found += [(m.decode().rpartition("\0")[2], grouped, m) for m in members]
    return found


async def _drop_orphans(conn: RedisConnection, entries: Sequence[tuple[str, str, bytes]]) -> int:
    """Set members whose job's record is gone (evicted, deleted by hand):
    nothing to remove but the members. How many."""
    ids = [job_id for job_id, _, _ in entries]
    gone = [
        (key, member)
        for (_, key, member), identity in zip(entries, await conn.identities(ids), strict=True)
        if identity is None
    ]
    if gone:
        async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
            for key, member in gone:
                pipe.zrem(key, member)
            await pipe.execute()
    return len(gone)


async def _remove_all(
    conn: RedisConnection, queue: str, states: Sequence[str], *, force: bool = False
) -> int:
    """Every job of ``queue`` in ``states``, batch by batch."""
    removed = 0
    for state in states:
        while entries := await _members(conn, queue, state, BATCH):
            ids = [job_id for job_id, _, _ in entries]
            gone = await remove_jobs(
                conn, queue, ids, states=(JobState(state),), force=force, listed=True
            )
            removed += gone
            if gone < len(ids) and not await _drop_orphans(conn, entries) and gone == 0:
                break  # every one changed under us (or runs): look again, not forever
    return removed


async def drain(conn: RedisConnection, *, queue: str, delayed: bool) -> int:
    return await _remove_all(conn, queue, ("waiting", "delayed") if delayed else ("waiting",))


async def obliterate(conn: RedisConnection, *, queue: str, force: bool) -> int:
    k = conn.keys
    client = await conn.connected()
    active = k.state(queue, "active")
    async with mapped_errors():
        was_paused = await client.hget(k.queues, queue)
        if was_paused is None:  # no such queue: nothing to do
            return 0
        if not force and (running := await client.zcard(active)):
            raise QueueBusy(queue, int(running))
        await client.hset(k.queues, queue, "1")  # no claim starts from here on
        if not force and (running := await client.zcard(active)):  # one just started
            await client.hset(k.queues, queue, was_paused)
            raise QueueBusy(queue, int(running))
    removed, idle_passes = 0, 0
    while True:
        this_pass = await _remove_all(conn, queue, _STATES, force=force)
        removed += this_pass
        idle_passes = 0 if this_pass else idle_passes + 1
        forget = [
            k.queues,
            k.limits,
            k.turns,
            *(k.state(queue, s) for s in _STATES),
            k.queue(queue, "gwaiting"),
            k.queue(queue, "groups"),
            k.queue(queue, "gactive"),
            k.queue(queue, "rate"),
            k.queue(queue, "grate"),
            k.marker(queue),
            k.queue(queue, "idle"),
        ]
        if await conn.fenced("forget", forget, [queue]):
            return removed
        if not force and (running := await client.zcard(active)):
            raise QueueBusy(queue, int(running))  # paused and consistent: try again later
        if idle_passes >= 2:  # nothing removable, yet not empty: never spin on it
            raise BackendError(f"queue {queue!r} holds jobs that could not be removed")


async def clean(
    conn: RedisConnection,
    *,
    queue: str | None,
    state: JobState,
    older_than_ms: int,
    keep: int,
    limit: int,
) -> int:
    cutoff = await conn.now() - older_than_ms
    removed = 0
    for q in [queue] if queue is not None else await conn.queue_names():
        if removed >= limit:
            break
        if state.finished:
            removed += await _clean_finished(conn, q, state, cutoff, keep, limit - removed)
        else:
            removed += await _clean_unfinished(conn, q, state, cutoff, keep, limit - removed)
    return removed


async def _clean_finished(
    conn: RedisConnection, queue: str, state: JobState, cutoff: int, keep: int, limit: int
) -> int:
    """Finished sets are scored by when each job finished: newest first, skip
    the newest ``keep`` and the young, then remove in batches."""
    key = conn.keys.state(queue, state)
    removed = 0
    while removed < limit:
        async with mapped_errors():
            young = await conn.client.zcount(key, f"({cutoff}", "+inf")
            start = max(keep, young)
            old = await conn.client.zrange(
                key, start, start + min(BATCH, limit - removed) - 1, desc=True
            )
        if not old:
            break
        ids = [m.decode() for m in old]
        gone = await remove_jobs(conn, queue, ids, states=(state,), before_ms=cutoff)
        removed += gone
        if gone == 0:
            break
    return removed


async def _clean_unfinished(
    conn: RedisConnection, queue: str, state: JobState, cutoff: int, keep: int, limit: int
) -> int:
    """Waiting and delayed sets are in run order, not by age: read every
    job's enqueue time (a scan of the set, in pages), spare the newest
    ``keep``, and remove those enqueued before ``cutoff``."""
    stamped: list[tuple[int, str]] = []
    offset = 0
    while page := await _page(conn, queue, state.value, offset):
        offset += len(page)
        async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
            for job_id in page:
                pipe.hget(conn.keys.job(job_id), "created_at")
            created = await pipe.execute()
        stamped += [(int(at), job_id) for job_id, at in zip(page, created, strict=True) if at]
    spared = {job_id for _, job_id in heapq.nlargest(keep, stamped)} if keep else set()
    old = [job_id for at, job_id in sorted(stamped) if at < cutoff and job_id not in spared]
    removed = 0
    for start in range(0, min(len(old), limit), BATCH):
        batch = old[start : min(start + BATCH, limit)]
        removed += await remove_jobs(conn, queue, batch, states=(state,), before_ms=cutoff)
    return removed


async def _page(conn: RedisConnection, queue: str, state: str, offset: int) -> list[str]:
    k = conn.keys
    async with mapped_errors():
        ids = [
            m.decode()
            for m in await conn.client.zrange(k.state(queue, state), offset, offset + 999)
        ]
        if state == "waiting":  # then the grouped ones, after the ungrouped
            ungrouped = await conn.client.zcard(k.state(queue, state))
            start = max(0, offset - ungrouped)
            if len(ids) < 1000:
                grouped = await conn.client.zrange(
                    k.queue(queue, "gwaiting"), start, start + 999 - len(ids)
                )
                ids += [m.decode().rpartition("\0")[2] for m in grouped]
    return ids
