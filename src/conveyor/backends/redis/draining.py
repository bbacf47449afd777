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
from conveyor.backends.redis.scripts import states_arg
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
) -> int:
    """Delete those of ``job_ids`` (of ``queue``) in one of ``states`` (none
    given: any) and finished, or if unfinished created, before ``before_ms``;
    active ones only with ``force``. One script: atomic. How many went."""
    identities = await conn.identities(job_ids)
    found = [
        (job_id, identity[1])
        for job_id, identity in zip(job_ids, identities, strict=True)
        if identity is not None and identity[0] == queue
    ]
    return await _remove_found(conn, queue, found, states, before_ms, force)


async def _remove_found(
    conn: RedisConnection,
    queue: str,
    found: Sequence[tuple[str, str]],
    states: Sequence[JobState],
    before_ms: int | None,
    force: bool,
) -> int:
    """``remove_jobs`` of ``(id, task)`` pairs whose records were read."""
    if not found:
        return 0
    k = conn.keys
    keys = _queue_keys(conn, queue)
    for job_id, task in found:
        keys += [k.job(job_id), k.logs(job_id), k.outcomes(job_id)]
        keys += [k.done(task, s) for s in FINISHED]
    before = "" if before_ms is None else before_ms
    args = [conn.offset, queue, states_arg(states), before, int(force)]
    return int(await conn.run("remove", keys, [*args, *(job_id for job_id, _ in found)]))


async def _entries(
    conn: RedisConnection, queue: str, state: str, offset: int, count: int
) -> list[tuple[str, str, bytes]]:
    """Up to ``count`` entries of one of the queue's sets from ``offset``, as
    (id, set, member): a waiting job's in its ungrouped order, then its
    grouped one."""
    k = conn.keys
    key = k.state(queue, state)
    async with mapped_errors():
        members = await conn.client.zrange(key, offset, offset + count - 1)
        found = [(m.decode(), key, m) for m in members]
        if state == "waiting" and len(found) < count:
            start = max(0, offset - await conn.client.zcard(key))
            grouped = k.queue(queue, "gwaiting")
            members = await conn.client.zrange(grouped, start, start + count - len(found) - 1)
            found += [(m.decode().rpartition("\0")[2], grouped, m) for m in members]
    return found


async def _remove_all(
    conn: RedisConnection, queue: str, states: Sequence[str], *, force: bool = False
) -> int:
    """Every job of ``queue`` in ``states``, batch by batch. A job whose
    record cannot be read goes too (it came from the queue's own sets), and
    a member whose record is gone (evicted, deleted by hand) is dropped."""
    removed = 0
    for state in states:
        while entries := await _entries(conn, queue, state, 0, BATCH):
            identities = await conn.identities([job_id for job_id, _, _ in entries])
            found, orphans = [], []
            for (job_id, key, member), identity in zip(entries, identities, strict=True):
                if identity is None:
                    orphans.append((key, member))
                elif identity[0] in (queue, ""):  # "": unreadable, but listed here
                    found.append((job_id, identity[1]))
            gone = await _remove_found(conn, queue, found, (JobState(state),), None, force)
            if orphans:
                async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
                    for key, member in orphans:
                        pipe.zrem(key, member)
                    await pipe.execute()
            removed += gone
            if gone == 0 and not orphans:
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
    removed, idle_passes = 0, 0
    while True:
        this_pass = await _remove_all(conn, queue, _STATES, force=force)
        removed += this_pass
        idle_passes = 0 if this_pass else idle_passes + 1
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
    while entries := await _entries(conn, queue, state.value, offset, 1000):
        offset += len(entries)
        page = [job_id for job_id, _, _ in entries]
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
