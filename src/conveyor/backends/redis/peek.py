"""The read-only look at queues that comes before every claim and idle wait
(``peek-3.lua``): holds, limits, room, the rotation of groups and the next
due time of each queue, with the server's time. It changes nothing, but
for registering an idle wait to be handed jobs (``Registration``); what it
saw may be stale by the time it is acted on, so the claim re-checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from conveyor.backends import claiming
from conveyor.backends.redis.keys import Keys


class ScriptRunner(Protocol):
    """What a peek runs through: ``RedisConnection``, which itself peeks for
    the server's time (so this module does not import it)."""

    keys: Keys

    @property
    def offset(self) -> int: ...

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...


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


class Registration(NamedTuple):
    """An idle wait's entry in the ``idle`` sets of the queues it may be handed
    jobs of (``enqueue-3.lua``)."""

    member: str  # its list, worker id, lease ms: NUL separated
    queues: frozenset[str]
    ttl_ms: int  # it lapses this long after the peek that registers it


async def peek(
    conn: ScriptRunner,
    rooms: Sequence[tuple[str, int]],
    registration: Registration | None = None,
) -> tuple[int, list[Look]]:
    """Server time, and how each queue looks to a claim with the room given in
    it (and an idle wait registered)."""
    keys, args = peek_call(conn.keys, rooms, conn.offset, registration)
    return parse_peek(await conn.run("peek", keys, args))


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
