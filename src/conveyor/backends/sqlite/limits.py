"""Limit scopes in the SQLite store: where each one's limits are stored, the
key that names it, and reading and setting them.

A scope is a queue (``group`` None: the ``max_active`` and ``rate_`` columns
of its ``queues`` row), every group of a queue (``EVERY_GROUP``: the same
row's ``group_`` columns, each group's default), or one group (its ``groups``
row, whose NULL columns fall back to that default field by field). A scope
is named by ``scope_key`` in ``rate_log`` and in what a claim held back; SQL
over ``groups AS g`` builds the same key with ``GROUP_KEY_SQL``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple

import msgspec

from conveyor.backends.sqlite.connection import placeholders
from conveyor.limits import EVERY_GROUP, Limits, Rate

# A group's key, as ``scope_key`` builds it, from a row of ``groups AS g``.
GROUP_KEY_SQL = "g.queue || char(0) || g.name"
# A group's cap on active jobs: its own, else every group's of its queue
# (``queues AS q``); ``own_or_default`` is the same rule in Python.
GROUP_MAX_ACTIVE_SQL = "coalesce(g.max_active, q.group_max_active)"


def scope_key(queue: str, group: str | None = None) -> str:
    """The name of a queue's scope, or of one of its groups' (never
    ``EVERY_GROUP``: each group counts its own starts)."""
    return queue if group is None else f"{queue}\0{group}"


def is_group_key(key: str) -> bool:
    return "\0" in key


class Stored(NamedTuple):
    """One scope's limit columns as stored (NULL: none set)."""

    max_active: int | None
    rate_max: int | None
    rate_ms: int | None


def own_or_default(own: Stored, default: Stored) -> Stored:
    """A group's limits: field by field its own, else every group's default."""
    max_active = own.max_active if own.max_active is not None else default.max_active
    if own.rate_max is None:
        return Stored(max_active, default.rate_max, default.rate_ms)
    return Stored(max_active, own.rate_max, own.rate_ms)


class _Place(NamedTuple):
    """Where a scope's limits are stored: the row and its columns' prefix."""

    table: str
    names: str  # the key columns, to insert the row
    where: str
    params: tuple[str, ...]
    prefix: str


def _place(queue: str, group: str | None) -> _Place:
    if group is None:
        return _Place("queues", "name", "name = ?", (queue,), "")
    if group == EVERY_GROUP:
        return _Place("queues", "name", "name = ?", (queue,), "group_")
    return _Place("groups", "queue, name", "queue = ? AND name = ?", (queue, group), "")


def set_limits(
    conn: sqlite3.Connection,
    *,
    queue: str,
    group: str | None,
    max_active: int | msgspec.UnsetType | None,
    rate: Rate | msgspec.UnsetType | None,
) -> None:
    """Set the scope's fields given (``UNSET``: left as they are)."""
    place = _place(queue, group)
    changes: dict[str, int | None] = {}
    if max_active is not msgspec.UNSET:
        changes[f"{place.prefix}max_active"] = max_active
    if rate is not msgspec.UNSET:
        changes[f"{place.prefix}rate_max"] = None if rate is None else rate.max
        changes[f"{place.prefix}rate_ms"] = None if rate is None else rate.per_ms
    conn.execute(
        f"INSERT OR IGNORE INTO {place.table} ({place.names})"
        f" VALUES ({placeholders(len(place.params))})",
        place.params,
    )
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        conn.execute(
            f"UPDATE {place.table} SET {assignments} WHERE {place.where}",
            (*changes.values(), *place.params),
        )


def get_limits(conn: sqlite3.Connection, *, queue: str) -> dict[str | None, Limits]:
    """The queue's scopes that have limits, the queue's first, then every
    group's default, then each group's own by name."""
    row = conn.execute(
        "SELECT max_active, rate_max, rate_ms, group_max_active, group_rate_max,"
        " group_rate_ms FROM queues WHERE name = ?",
        (queue,),
    ).fetchone()
    scopes: list[tuple[str | None, tuple[Any, ...]]] = []
    if row is not None:
        scopes += [(None, row[:3]), (EVERY_GROUP, row[3:])]
    scopes += [
        (name, tuple(values))
        for name, *values in conn.execute(
            "SELECT name, max_active, rate_max, rate_ms FROM groups WHERE queue = ?"
            " AND (max_active IS NOT NULL OR rate_max IS NOT NULL) ORDER BY name",
            (queue,),
        )
    ]
    found: dict[str | None, Limits] = {}
    for scope, (max_active, rate_max, rate_ms) in scopes:
        limits = Limits(
            max_active=max_active, rate=None if rate_max is None else Rate(rate_max, rate_ms)
        )
        if not limits.empty:
            found[scope] = limits
    return found
