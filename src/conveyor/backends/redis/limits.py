"""A queue's and its groups' limits in the store: one ``limits`` hash of
every queue's, each field named by ``keys.limit_scope`` and
``keys.limit_field`` (the scripts read it through lib.lua's functions of the
same names). Setting them wakes a worker of the queue to claim anew.
"""

from __future__ import annotations

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.keys import limit_field, limit_scope, parse_limit_field
from conveyor.limits import Limits, Rate, with_holds


async def set_limits(
    conn: RedisConnection,
    *,
    queue: str,
    group: str | None,
    max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
    rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
) -> None:
    client = await conn.connected()
    scope = limit_scope(queue, group)
    changes: dict[str, str | None] = {}
    if max_active is not msgspec.UNSET:
        changes["a"] = None if max_active is None else str(max_active)
    if rate is not msgspec.UNSET:
        changes["r"] = None if rate is None else f"{rate.max}:{rate.window_ms}:{rate.per_ms}"
    async with mapped_errors(), client.pipeline(transaction=True) as pipe:
        pipe.hsetnx(conn.keys.queues, queue, "0")  # the queue is known even if empty
        for field, value in changes.items():
            if value is None:
                pipe.hdel(conn.keys.limits, limit_field(scope, field))
            else:
                pipe.hset(conn.keys.limits, limit_field(scope, field), value)
        pipe.rpush(conn.keys.marker(queue), "1")
        await pipe.execute()


async def get_limits(conn: RedisConnection, *, queue: str) -> dict[str | None, Limits]:
    client = await conn.connected()
    async with mapped_errors():
        stored = await client.hgetall(conn.keys.limits)
    fields: dict[str | None, dict[str, str]] = {}
    for raw, value in stored.items():
        of, group, field = parse_limit_field(raw.decode())
        if of == queue:
            fields.setdefault(group, {})[field] = value.decode()
    found = {}
    for group, values in sorted(fields.items(), key=lambda item: item[0] or ""):
        limits = _limits(values)
        if not limits.empty:  # a scope with only a hold ('h') has no limits
            found[group] = limits
    k = conn.keys
    keys = [k.limits, k.queue(queue, "rate"), k.queue(queue, "grate")]
    flat = await conn.run("held", keys, [conn.offset, queue])
    held = {
        (scope.decode() or None): int(ms) for scope, ms in zip(flat[::2], flat[1::2], strict=True)
    }
    return with_holds(found, held)


def _limits(values: dict[str, str]) -> Limits:
    """The limits of one scope, from its fields."""
    rate = None
    if "r" in values:
        most, _, per_ms = values["r"].split(":")
        rate = Rate(int(most), int(per_ms))
    active = values.get("a")
    return Limits(max_active=None if active is None else int(active), rate=rate)
