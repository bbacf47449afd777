"""The Redis claim, in up to three round trips: a read-only look at the queues
(``peek-3.lua``: holds, limits, rooms, the rotation of groups), for queues
with groups a read of the allotted groups' first jobs, then ``claim-4.lua``,
which leases the picked candidates in order and re-checks every one of them
and every limit atomically. A stale look costs a skipped candidate, never a
limit passed or a job claimed twice. The order of service is ``claiming``'s,
as on every store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from conveyor.backends import claiming
from conveyor.backends.redis.keys import Keys
from conveyor.backends.values import QueueSlots

GROUP_SCORE = 17592186044416  # 2^44: waiting scores are (100 - priority) * 2^44 + seq


class Rotation(NamedTuple):
    plain_turn: int  # the turn of the queue's jobs without a group
    groups: list[claiming.Member]  # groups with room, in turn order
    free_at: int  # when the first group held back frees (-1: none)


class Look(NamedTuple):
    """One queue, as the peek saw it."""

    paused: bool
    waiting: list[tuple[float, str]]  # (score, id) of the first jobs without a group
    due: int  # the next delayed job's due time (-1: none)
    room: int  # jobs the queue may start now
    held: int  # until when the queue's own hold or full rate window lasts (-1: none)
    rotation: Rotation | None  # None: no groups


class Candidate(NamedTuple):
    score: float  # waiting order within its group or queue (lower first)
    id: str
    queue: str


class Registration(NamedTuple):
    """An idle wait's entry in the ``idle`` sets of the queues it may be handed
    jobs of (``enqueue-3.lua``)."""

    member: str  # its list, worker id, lease ms: NUL separated
    queues: frozenset[str]
    ttl_ms: int  # it lapses this long after the peek that registers it


def queue_keys(keys: Keys, queue: str) -> list[str]:
    """The per-queue keys of the peek (after ``waiting`` and ``delayed``)."""
    return [keys.queue(queue, part) for part in ("gwaiting", "groups", "gactive")] + [
        keys.state(queue, "active"),
        keys.queue(queue, "rate"),
        keys.queue(queue, "grate"),
        keys.queue(queue, "idle"),
    ]


def peek_call(
    keys: Keys,
    rooms: Sequence[tuple[str, int]],
    offset: int,
    registration: Registration | None = None,
) -> tuple[list[str], list[Any]]:
    """The peek of queues, each with the room a claim has in it (0: none),
    registering an idle wait in the queues it names."""
    script_keys = [keys.queues, keys.limits, keys.turns]
    args: list[Any] = (
        [offset, "", 0]
        if registration is None
        else [
            offset,
            registration.member,
            registration.ttl_ms,
        ]
    )
    registered = frozenset() if registration is None else registration.queues
    for queue, room in rooms:
        script_keys += [
            keys.state(queue, "waiting"),
            keys.state(queue, "delayed"),
            *queue_keys(keys, queue),
        ]
        args += [queue, room, int(queue in registered)]
    return script_keys, args


def parse_peek(reply: Sequence[Any]) -> tuple[int, list[Look]]:
    now, *per_queue = reply
    looks = []
    for paused, waiting, due, room, held, groups in per_queue:
        pairs = zip(waiting[::2], waiting[1::2], strict=True)
        rotation = None
        if groups:
            plain_turn, flat, free_at = groups
            members = [
                claiming.Member(
                    flat[i].decode(), int(flat[i + 1]), int(flat[i + 2]), int(flat[i + 3])
                )
                for i in range(0, len(flat), 4)
            ]
            rotation = Rotation(int(plain_turn), members, int(free_at))
        looks.append(
            Look(
                bool(paused),
                [(float(s), m.decode()) for m, s in pairs],
                int(due),
                int(room),
                int(held),
                rotation,
            )
        )
    return int(now), looks


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
