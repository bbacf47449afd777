"""Limit scopes in the SQLite store: the row that holds each one's limits
(``place``), the key that names it, and reading and setting its limits.

A scope is a queue (``group`` None: the ``max_active``, ``rate_`` and
``blocked_until`` columns of its ``queues`` row), every group of a queue
(``EVERY_GROUP``: the same row's ``group_`` columns, each group's default),
or one group (its ``groups`` row, whose NULL limits fall back to that default
field by field). A scope is named by ``scope_key`` in ``rate_log`` and in
what a claim held back; SQL over ``groups AS g`` builds the same key with
``GROUP_KEY_SQL``.
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


class Place(NamedTuple):
    """The row that holds a scope's limits and hold, and its columns' prefix."""

    table: str
    names: str  # the key columns, to insert the row
    where: str  # the row, with ``params``
    params: tuple[str, ...]
    prefix: str  # of the limit columns: ``group_`` for every group's default


def place(queue: str, group: str | None) -> Place:
    if group is None:
        return Place("queues", "name", "name = ?", (queue,), "")
    if group == EVERY_GROUP:
        return Place("queues", "name", "name = ?", (queue,), "group_")
    return Place("groups", "queue, name", "queue = ? AND name = ?", (queue, group), "")


def set_limits(
    conn: sqlite3.Connection,
    *,
    queue: str,
    group: str | None,
    max_active: int | msgspec.UnsetType | None,
    rate: Rate | msgspec.UnsetType | None,
) -> None:
    """Set the scope's fields given (``UNSET``: left as they are)."""
    row = place(queue, group)
    changes: dict[str, int | None] = {}
    if max_active is not msgspec.UNSET:
        changes[f"{row.prefix}max_active"] = max_active
    if rate is not msgspec.UNSET:
        changes[f"{row.prefix}rate_max"] = None if rate is None else rate.max
        changes[f"{row.prefix}rate_ms"] = None if rate is None else rate.per_ms
    conn.execute(
        f"INSERT OR IGNORE INTO {row.table} ({row.names}) VALUES ({placeholders(len(row.params))})",
        row.params,
    )
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        conn.execute(
            f"UPDATE {row.table} SET {assignments} WHERE {row.where}",
            (*changes.values(), *row.params),
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
