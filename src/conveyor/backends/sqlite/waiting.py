"""How an idle worker waits for jobs on SQLite.

Waiting costs one ``PRAGMA data_version`` per poll on the backend's poll
connection: it changes only when another connection (our writer too)
commits, and the poll interval stretches from 2 ms to 100 ms over the first
second of idleness, so an idle worker uses well under 1 % of a core. A write
from this process that may free work sets the backend's ``wakeup`` and ends
every wait at once. What the last claim of the same queues saw
(``LastClaim``, noted by ``claims.claim``) lets a wait skip a look when
nothing was committed since, and sleep no longer than until a delayed job it
saw falls due or a limit it met frees.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Sequence

from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.limits import (
    GROUP_KEY_SQL,
    GROUP_MAX_ACTIVE_SQL,
    is_group_key,
    scope_key,
)
from conveyor.backends.sqlite.state import NO_CLAIM, State
from conveyor.clock import Clock

FAST_POLL_S = 0.002
SLOW_POLL_S = 0.1
WARM_S = 1.0  # keep polling fast this long after the last sign of work


def claim_key(queues: Iterable[str]) -> tuple[str, ...]:
    """The key of a set of queues in ``SQLiteBackend.last_claim``."""
    return tuple(queues)


def _earliest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


async def wait(backend: State, queues: Sequence[str], timeout_s: float) -> None:
    """Return when one of ``queues`` may well have a job to claim, or at
    ``timeout_s``."""
    poll = await backend.poll_connection()
    clock = backend.clock
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    backend.wakeup.clear()
    version = poll.execute("PRAGMA data_version").fetchone()[0]
    claimed_at, next_due, held, _ = backend.last_claim.get(claim_key(queues), NO_CLAIM)
    # Nothing committed since the last claim looked: it saw all there is.
    # Otherwise look again: a job may be ready, or delayed (a retry
    # written just after that claim) and due before anything it saw.
    if version != claimed_at:
        if has_ready(poll, clock, queues, held):
            return
        next_due = _earliest(next_due, next_run_at(poll, queues))
    while True:
        now = loop.time()
        if now >= deadline:
            return
        idle = time.monotonic() - backend.last_work
        interval = FAST_POLL_S if idle < WARM_S else SLOW_POLL_S
        if next_due is not None:
            interval = min(interval, max(0.0, (next_due - clock.now_ms()) / 1000))
        try:
            await asyncio.wait_for(backend.wakeup.wait(), min(interval, deadline - now))
            return
        except TimeoutError:
            pass
        if next_due is not None and clock.now_ms() >= next_due:
            return
        current = poll.execute("PRAGMA data_version").fetchone()[0]
        if current != version:
            version = current
            if has_ready(poll, clock, queues, held):
                backend.last_work = time.monotonic()
                return
            next_due = _earliest(next_due, next_run_at(poll, queues))


def has_ready(
    conn: sqlite3.Connection, clock: Clock, queues: Sequence[str], held: dict[str, int]
) -> bool:
    """Whether a queue has a waiting job it may start: neither the queue nor
    the job's group paused, full, or held back by a limit the last claim met
    (``held``, scope key to until when). A cheap read, not a claim."""
    now = clock.now_ms()
    held = {scope: until for scope, until in held.items() if until > now}
    asked = tuple(queues)
    closed = {
        name
        for (name,) in conn.execute(
            f"SELECT name FROM queues WHERE name IN ({placeholders(len(asked))}) AND (paused"
            " OR blocked_until > ? OR max_active <= (SELECT count(*) FROM jobs"
            " WHERE state = 'active' AND queue = name))",
            (*asked, now),
        )
    }
    open_ = tuple(q for q in asked if q not in closed and scope_key(q) not in held)
    if not open_:
        return False
    marks = placeholders(len(open_))
    if conn.execute(
        f"SELECT 1 FROM jobs WHERE state = 'waiting' AND grp IS NULL AND queue IN ({marks})"
        " LIMIT 1",
        open_,
    ).fetchone():
        return True
    groups_held = [key for key in held if is_group_key(key)][:500]
    return (
        conn.execute(
            "SELECT 1 FROM groups AS g LEFT JOIN queues AS q ON q.name = g.queue"
            f" WHERE g.waiting > 0 AND g.queue IN ({marks})"
            f" AND coalesce(g.blocked_until, 0) <= ? AND ({GROUP_MAX_ACTIVE_SQL} IS NULL"
            f" OR g.active < {GROUP_MAX_ACTIVE_SQL})"
            f" AND {GROUP_KEY_SQL} NOT IN ({placeholders(len(groups_held))})"
            " LIMIT 1",
            (*open_, now, *groups_held),
        ).fetchone()
        is not None
    )


def next_run_at(conn: sqlite3.Connection, queues: Sequence[str]) -> int | None:
    """When the first delayed job of ``queues`` falls due (None: there is none)."""
    row = conn.execute(
        f"SELECT run_at FROM jobs WHERE state = 'delayed'"
        f" AND queue IN ({placeholders(len(queues))}) ORDER BY run_at LIMIT 1",
        tuple(queues),
    ).fetchone()
    return None if row is None else int(row[0])
