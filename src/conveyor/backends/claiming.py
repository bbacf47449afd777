"""How a claim picks jobs, shared by every backend: groups take turns, and
several queues compete by priority.

The backends gather what is stored (who is waiting, which limits leave room)
and run the claim atomically; the order in which jobs are taken is decided
here, once, so every store serves groups alike (``conveyor.limits`` states
the fairness this gives).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

__all__ = ["Member", "allot", "interleave", "merge_queues", "new_turns", "rotation"]

T = TypeVar("T")


class Member(NamedTuple):
    """One turn-taker of a queue's rotation: a group, or (``group`` None) the
    queue's jobs without a group."""

    group: str | None
    turn: int  # when it was last served; the lowest goes first
    waiting: int  # jobs it has waiting (counting beyond the claim's room is not needed)
    room: int  # jobs it may start now, by its limits


def rotation(
    groups: Sequence[Member], plain_turn: int, plain_waiting: int, room: int
) -> list[Member]:
    """A queue's members in turn order: its groups with room, and (if it has
    any waiting) its jobs without a group as one more member."""
    members = list(groups)
    if plain_waiting:
        members.append(Member(None, plain_turn, plain_waiting, room))
        members.sort(key=lambda m: m.turn)
    return members


def allot(members: Sequence[Member], room: int) -> list[int]:
    """How many jobs each member (in turn order) gets from a claim with
    ``room`` slots: one each per round, skipping those out of jobs or room."""
    counts = [0] * len(members)
    caps = [min(m.waiting, m.room) for m in members]
    left = room
    while left > 0:
        given = 0
        for i, cap in enumerate(caps):
            if counts[i] < cap and left > 0:
                counts[i] += 1
                left -= 1
                given += 1
        if given == 0:
            break
    return counts


def interleave(picked: Sequence[Sequence[T]]) -> list[T]:
    """The members' jobs (each member's list in its own order, members in turn
    order) as the rounds take them: first job of each, then second of each..."""
    out: list[T] = []
    for round_ in range(max((len(jobs) for jobs in picked), default=0)):
        out += [jobs[round_] for jobs in picked if round_ < len(jobs)]
    return out


def merge_queues(lists: Sequence[Sequence[T]], rank: Callable[[T], tuple[float, ...]]) -> list[T]:
    """One order over several queues' candidates: each queue's list stays in
    its own order, and at every step the queue whose next job ranks first
    (``rank``: lower first, e.g. ``(-priority, seq)``) gives it."""
    if len(lists) == 1:
        return list(lists[0])
    heads = [(rank(jobs[0]), q, 0) for q, jobs in enumerate(lists) if jobs]
    heapq.heapify(heads)
    out: list[T] = []
    while heads:
        _, q, i = heapq.heappop(heads)
        out.append(lists[q][i])
        if i + 1 < len(lists[q]):
            heapq.heappush(heads, (rank(lists[q][i + 1]), q, i + 1))
    return out


def new_turns(served: Sequence[str | None], first: int) -> dict[str | None, int]:
    """Each served member's new turn: the order of service, numbered from
    ``first``; a member served twice keeps its later number, so the next
    claim starts with whoever waited longest."""
    return {member: first + i for i, member in enumerate(served)}
