"""The Redis claim, in up to three round trips: a read-only look at the queues
(``peek.py``), for queues with groups a read of the allotted groups' first
jobs, then ``claim-4.lua``, which leases the picked candidates in order and
re-checks every one of them and every limit atomically. A stale look costs a
skipped candidate, never a limit passed or a job claimed twice. The order of
service is ``claiming``'s, as on every store. Also here: promoting due delayed
jobs before a look, and turning a lease (a claim's or a hand-off's) into a
``ClaimedJob``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from conveyor.backends import claiming
from conveyor.backends.base import KEEP_ALL, PROMOTE_BATCH, unreadable
from conveyor.backends.redis import admin, finishing
from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.keys import Keys
from conveyor.backends.redis.peek import Look, peek
from conveyor.backends.redis.record import job_from_fields
from conveyor.backends.rows import UnreadableRecord
from conveyor.backends.values import ClaimedJob, QueueSlots

GROUP_SCORE = 17592186044416  # 2^44: waiting scores are (100 - priority) * 2^44 + seq


class Candidate(NamedTuple):
    score: float  # waiting order within its group or queue (lower first)
    id: str
    queue: str


def room_left(slots: Sequence[QueueSlots], handed: Sequence[ClaimedJob]) -> list[QueueSlots]:
    """``slots`` less one free slot for each job already handed to this
    process, in the first slots that take its queue."""
    left = list(slots)
    for job in handed:
        at = next((i for i, room in enumerate(left) if job.job.queue in room.queues), None)
        if at is not None:
            left[at] = left[at]._replace(free=left[at].free - 1)
    return left


async def claim(
    conn: RedisConnection, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
) -> list[ClaimedJob]:
    """Lease waiting jobs to ``worker_id``, at most each slots' free count
    from its queues (see ``Backend.claim``)."""
    slots = [room for room in slots if room.free > 0 and room.queues]
    if not slots:
        return []
    await conn.connected()
    rooms = [(queue, room.free) for room in slots for queue in room.queues]
    queues = [queue for queue, _ in rooms]
    hinted = [
        Candidate(0.0, conn.hints.pop(queue), queue)
        for room in slots
        for queue in room.queues[: room.free]
        if queue in conn.hints
    ]
    if hinted:  # woken by an enqueue that named its only waiting job: no look needed
        claimed = await lease(conn, hinted, lease_ms, worker_id)
        if claimed:
            return claimed
    for _ in range(2):  # a second look after promoting due delayed jobs
        now, looks = await peek(conn, rooms)
        due = [q for q, look in zip(queues, looks, strict=True) if 0 <= look.due <= now]
        if not due or not await promote_due(conn, due):
            break
    planned = allotments(queues, looks)
    group_jobs = await _group_jobs(conn, planned) if planned else {}
    chosen = candidates(slots, looks, planned, group_jobs)
    conn.retry_at[tuple(queues)] = retry_at(looks)
    if not chosen:
        return []
    return await lease(conn, chosen, lease_ms, worker_id)


async def lease(
    conn: RedisConnection, chosen: Sequence[Candidate], lease_ms: int, worker_id: str
) -> list[ClaimedJob]:
    """Claim the candidates that are still waiting and within every limit."""
    keys, args = claim_call(conn.keys, chosen, conn.offset, lease_ms, worker_id)
    taken, expired = await conn.run("claim", keys, args)
    for job_id in expired:
        await admin.cancel(conn, job_id=job_id.decode(), reason="expired", expired_only=True)
    queue_of = {c.id: c.queue for c in chosen}
    claimed = []
    for token, expires, values, job_id in taken:
        job_id = job_id.decode()
        job = await claimed_job(conn, job_id, queue_of[job_id], token.decode(), expires, values)
        if job is not None:
            claimed.append(job)
    return claimed


async def claimed_job(
    conn: RedisConnection,
    job_id: str,
    queue: str,
    token: str,
    expires: Any,
    values: Sequence[Any],
) -> ClaimedJob | None:
    """A job leased to us, from a claim's reply (``lease`` in lib.lua) or a
    hand-off's; None for one whose record cannot be read: it fails on its own."""
    try:
        job, arguments = job_from_fields(values, job_id)
    except UnreadableRecord as exc:
        conn.owned[job_id] = (queue, "")  # its task is unknown: no retention to keep
        await finishing.fail(
            conn,
            job_id=job_id,
            token=token,
            error=unreadable(exc),
            traceback=None,
            retry_in_ms=None,
            retention=KEEP_ALL,
        )
        return None
    conn.owned[job.id] = (job.queue, job.task)
    if job.group is None and job.parent_id is None:
        conn.lean.add(job.id)
    return ClaimedJob(job=job, token=token, lease_expires_ms=int(expires), payload=arguments)


async def promote_due(conn: RedisConnection, queues: Iterable[str]) -> int:
    """Promote a batch of due delayed jobs in each queue; returns how many moved."""
    k = conn.keys
    moved = 0
    for queue in queues:
        async with mapped_errors():
            delayed = await conn.client.zrange(k.state(queue, "delayed"), 0, PROMOTE_BATCH - 1)
        ids = [m.decode() for m in delayed]
        if ids:
            keys = [
                k.state(queue, "delayed"),
                k.state(queue, "waiting"),
                k.marker(queue),
                k.queue(queue, "gwaiting"),
                k.queue(queue, "groups"),
            ]
            result = await conn.run(
                "promote", keys + [k.job(i) for i in ids], [conn.offset, 0, *ids]
            )
            moved += int(result[0])
    return moved


async def _group_jobs(
    conn: RedisConnection, planned: Sequence[tuple[str, Sequence[claiming.Member], Sequence[int]]]
) -> dict[tuple[str, str], list[Candidate]]:
    """The first waiting jobs of each group that a claim allotted jobs to."""
    wanted = [
        (queue, member.group, count)
        for queue, members, counts in planned
        for member, count in zip(members, counts, strict=True)
        if count and member.group is not None
    ]
    found = await first_of_groups(conn, wanted)
    return {(queue, group): jobs for (queue, group, _), jobs in zip(wanted, found, strict=True)}


async def first_of_groups(
    conn: RedisConnection, wanted: Sequence[tuple[str, str, int]]
) -> list[list[Candidate]]:
    """For each ``(queue, group, n)``: the group's first ``n`` waiting jobs."""
    if not wanted:
        return []
    async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
        for queue, group, count in wanted:
            pipe.zrangebylex(
                conn.keys.queue(queue, "gwaiting"), f"[{group}\0", f"({group}\1", 0, count
            )
        replies = await pipe.execute()
    return [
        group_candidates(members, queue)
        for (queue, _, _), members in zip(wanted, replies, strict=True)
    ]


# -- the plan: which waiting jobs to claim, from the look ------------------------


def allotments(
    queues: Sequence[str], looks: Sequence[Look]
) -> list[tuple[str, list[claiming.Member], list[int]]]:
    """Per queue with groups: its rotation (its jobs without a group as one
    member) and how many jobs each member gets."""
    planned = []
    for queue, look in zip(queues, looks, strict=True):
        if look.rotation is None or look.room <= 0:
            continue
        members = claiming.rotation(
            look.rotation.groups, look.rotation.plain_turn, len(look.waiting), look.room
        )
        planned.append((queue, members, claiming.allot(members, look.room)))
    return planned


def group_candidates(members: Sequence[bytes], queue: str) -> list[Candidate]:
    """Candidates from ``gwaiting`` members: group NUL priority+seq NUL id."""
    found = []
    for member in members:
        _, order, job_id = member.decode().split("\0")
        found.append(Candidate(int(order[:3]) * GROUP_SCORE + int(order[3:]), job_id, queue))
    return found


def candidates(
    slots: Sequence[QueueSlots],
    looks: Sequence[Look],
    planned: Sequence[tuple[str, Sequence[claiming.Member], Sequence[int]]],
    group_jobs: dict[tuple[str, str], list[Candidate]],
) -> list[Candidate]:
    """The jobs to claim, in order: each queue's (rotation-ordered with
    groups), merged across the queues of each slots by priority, then the
    waiting order, at most its free slots (``looks`` in the slots' order)."""
    rotations = {queue: (members, counts) for queue, members, counts in planned}
    chosen: list[Candidate] = []
    at = iter(looks)
    for room in slots:
        lists = []
        for queue in room.queues:
            look = next(at)
            plain = [Candidate(score, job_id, queue) for score, job_id in look.waiting]
            if queue not in rotations:
                lists.append(plain[: look.room])
                continue
            members, counts = rotations[queue]
            picked = [
                plain[:count] if member.group is None else group_jobs.get((queue, member.group), [])
                for member, count in zip(members, counts, strict=True)
                if count
            ]
            lists.append(claiming.interleave(picked))
        chosen += claiming.merge_queues(lists, lambda c: (c.score,))[: room.free]
    return chosen


def claim_call(
    keys: Keys, chosen: Sequence[Candidate], offset: int, lease_ms: int, worker_id: str
) -> tuple[list[str], list[Any]]:
    queues = list(dict.fromkeys(c.queue for c in chosen))
    index = {queue: i for i, queue in enumerate(queues)}
    script_keys = [keys.queues, keys.limits, keys.turns, keys.seq]
    for queue in queues:
        script_keys += [
            keys.state(queue, "waiting"),
            keys.queue(queue, "gwaiting"),
            keys.queue(queue, "groups"),
            keys.queue(queue, "gactive"),
            keys.state(queue, "active"),
            keys.marker(queue),
            keys.queue(queue, "rate"),
            keys.queue(queue, "grate"),
        ]
    args: list[Any] = [offset, lease_ms, worker_id, len(queues), *queues]
    for c in chosen:
        script_keys.append(keys.job(c.id))
        args += [c.id, index[c.queue], os.urandom(8).hex()]
    return script_keys, args


def retry_at(looks: Sequence[Look]) -> int | None:
    """When a limit that held jobs back frees (the earliest), if any."""
    times = [look.held for look in looks if look.held >= 0]
    times += [
        look.rotation.free_at
        for look in looks
        if look.rotation is not None and look.rotation.free_at >= 0
    ]
    return min(times, default=None)
