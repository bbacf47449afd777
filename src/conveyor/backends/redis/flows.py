"""Flows: the outcomes finished children owe their parents. A child's own
script writes its outcome to the outbox (``child_done`` in lib.lua); here
``settle-10.lua`` applies each to the parent (right away by the worker that
finished the child, or by any worker's chore within a second), and a
parent's applied outcomes are read back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.record import retention_member
from conveyor.backends.redis.scripts import Code
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.job import ChildOutcome, JobState

log = logging.getLogger("conveyor.redis")


async def apply_outcomes(
    conn: RedisConnection, *, child_ids: Sequence[str] | None, limit: int
) -> int:
    applied = 0
    for child_id, entry in await _due(conn, child_ids, limit):
        parent_id = _parent(entry)
        try:
            while True:  # a parent failed by its child owes its own parent an outcome
                code = await settle(conn, child_id, parent_id)
                applied += code != Code.STALE
                if code != Code.PARENT_FAILED:
                    break
                async with mapped_errors():
                    owed = await conn.client.hget(conn.keys.outbox, parent_id)
                if owed is None:
                    break
                child_id, parent_id = parent_id, _parent(owed)
        except BackendUnavailable:
            raise
        except BackendError as exc:  # one bad entry must not hold up the others
            log.warning("outcome of job %s for its parent not applied: %s", child_id, exc)
    return applied


async def _due(
    conn: RedisConnection, child_ids: Sequence[str] | None, limit: int
) -> list[tuple[str, bytes]]:
    """Outbox entries to apply: those of ``child_ids``, or up to ``limit`` of any."""
    client = await conn.connected()
    async with mapped_errors():
        if child_ids is None:
            _, found = await client.hscan(conn.keys.outbox, 0, count=limit)
            return [(child.decode(), entry) for child, entry in list(found.items())[:limit]]
        entries = await client.hmget(conn.keys.outbox, list(child_ids))
    return [(c, e) for c, e in zip(child_ids, entries, strict=True) if e is not None]


def _parent(entry: bytes) -> str:
    """The parent an outbox entry is owed to (its first field)."""
    return entry.split(b"\0", 1)[0].decode()


async def settle(conn: RedisConnection, child_id: str, parent_id: str) -> Code:
    """Apply the outcome ``child_id`` owes ``parent_id``: ``Code.STALE`` if
    none is due, ``Code.PARENT_FAILED`` if the parent failed of it."""
    queue, task = await conn.identity(parent_id) or ("", "")  # gone: the entry is dropped
    k = conn.keys
    keys = [
        k.outbox,
        k.outcomes(parent_id),
        k.job(parent_id),
        k.state(queue, "waiting"),
        k.queue(queue, "gwaiting"),
        k.queue(queue, "groups"),
        k.marker(queue),
        k.state(queue, "waiting_children"),
        k.state(queue, "failed"),
        k.done(task, "failed"),
    ]
    args = [conn.offset, child_id, parent_id, retention_member(queue, parent_id)]
    return Code(int(await conn.run("settle", keys, args)))


async def child_outcomes(conn: RedisConnection, *, parent_id: str) -> list[ChildOutcome]:
    client = await conn.connected()
    async with mapped_errors():
        stored = await client.hgetall(conn.keys.outcomes(parent_id))
    outcomes = []
    for child, value in stored.items():
        state, ignored, task, result, error = value.split(b"\0", 4)
        outcomes.append(
            ChildOutcome(
                id=child.decode(),
                task=task.decode(),
                state=JobState(state.decode()),
                result=msgspec.json.decode(result) if result else None,
                error=error.decode() or None,
                ignored=ignored == b"1",
            )
        )
    return outcomes
