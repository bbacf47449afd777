"""The SQLite claim: one writer transaction that promotes due jobs, reads
every limit in play, picks jobs (``claiming`` decides the order) and leases
them, logging each start against the rate limits it counts for. ``claim``
runs it, notes what it saw for the idle wait (``state.LastClaim``) and
turns its rows into jobs once the transaction is over.

Rate limits are sliding windows: a scope with ``rate_max`` starts per
``rate_ms`` keeps its last ``rate_max`` starts numbered in ``rate_log``, and a
new start is allowed while the start ``rate_max`` places back is at least a
window old (``rate_ms`` and its margin, ``conveyor.limits.window_ms``). Every
lookup is by primary key, whatever the rate.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from conveyor.backends import claiming
from conveyor.backends.base import PROMOTE_BATCH, unreadable
from conveyor.backends.rows import COLUMNS, UnreadableRecord, job_from_row
from conveyor.backends.sqlite import finishing, flows
from conveyor.backends.sqlite.connection import placeholders
from conveyor.backends.sqlite.limits import Stored, own_or_default, scope_key
from conveyor.backends.sqlite.state import LastClaim, State
from conveyor.backends.sqlite.waiting import claim_key
from conveyor.backends.values import ClaimedJob, QueueSlots
from conveyor.clock import Clock
from conveyor.limits import window_ms

# The queues of a claim that have anything to look at: a pause, a limit, a
# hold or groups. The others (the common case) go straight to their jobs.
_QUEUE = (
    "SELECT name, paused, max_active, rate_max, rate_ms, blocked_until, group_max_active,"
    " group_rate_max, group_rate_ms, turn FROM queues WHERE name IN ({}) AND (paused"
    " OR max_active IS NOT NULL OR rate_max IS NOT NULL OR blocked_until > ?"
    " OR EXISTS (SELECT 1 FROM groups AS g WHERE g.queue = queues.name AND g.waiting > 0))"
)
_GROUPS = (
    "SELECT name, turn, waiting, active, max_active, rate_max, rate_ms, blocked_until"
    " FROM groups WHERE queue = ? AND waiting > 0 ORDER BY turn"
)
_PLAIN = (
    "SELECT priority, seq, id, expires_at FROM jobs WHERE state = 'waiting' AND queue = ?"
    " AND grp IS NULL ORDER BY priority DESC, seq LIMIT ?"
)
_GROUP_JOBS = (
    "SELECT priority, seq, id, expires_at FROM jobs WHERE state = 'waiting' AND queue = ?"
    " AND grp = ? ORDER BY priority DESC, seq LIMIT ?"
)


_LEASE = (
    "UPDATE jobs SET state = 'active', token = lower(hex(randomblob(8))),"
    " attempts = attempts + 1, lease_expires_at = ?, worker_id = ?, started_at = ?,"
    f" expires_at = NULL WHERE id IN ({{}}) RETURNING lease_expires_at, token, {COLUMNS}"
)


class Candidate(NamedTuple):
    priority: int
    seq: int
    id: str
    expires_at: int | None
    queue: str
    group: str | None


class Window:
    """A scope's rate window as read by this claim: how many may start now."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        scope: str,
        rate_max: int,
        rate_ms: int,
        want: int,
        now: int,
    ) -> None:
        self.scope, self.rate_max = scope, rate_max
        rate_ms = window_ms(rate_ms)
        (last,) = conn.execute("SELECT max(n) FROM rate_log WHERE scope = ?", (scope,)).fetchone()
        self.last = last or 0
        first = self.last - rate_max  # start j of this claim displaces start first + j
        times = dict(
            conn.execute(
                "SELECT n, at FROM rate_log WHERE scope = ? AND n > ? AND n <= ?",
                (scope, first, first + want),
            ).fetchall()
        )
        self.room = 0
        self.free_at: int | None = None
        while self.room < want:
            displaced = first + self.room + 1
            at = now if displaced > self.last else times.get(displaced)  # > last: this claim's
            if at is not None and at > now - rate_ms:
                self.free_at = at + rate_ms
                break
            self.room += 1

    def log(self, conn: sqlite3.Connection, starts: int, now: int) -> None:
        if starts <= 0:
            return
        conn.executemany(
            "INSERT INTO rate_log (scope, n, at) VALUES (?, ?, ?)",
            [(self.scope, self.last + i, now) for i in range(1, starts + 1)],
        )
        conn.execute(
            "DELETE FROM rate_log WHERE scope = ? AND n <= ?",
            (self.scope, self.last + starts - self.rate_max),
        )


def held(conn: sqlite3.Connection, clock: Clock, *, queue: str) -> dict[str | None, int]:
    """How long (ms) each scope of ``queue`` that may not start a job now is
    held: by a full rate window, or by a ``RateLimited`` hold."""
    now = clock.now_ms()
    scopes = conn.execute(
        "SELECT NULL, q.rate_max, q.rate_ms, q.blocked_until FROM queues q WHERE q.name = ?1"
        " UNION ALL SELECT g.name, coalesce(g.rate_max, q.group_rate_max),"
        " coalesce(g.rate_ms, q.group_rate_ms), g.blocked_until FROM groups g"
        " JOIN queues q ON q.name = g.queue WHERE g.queue = ?1",
        (queue,),
    ).fetchall()
    found: dict[str | None, int] = {}
    for group, rate_max, rate_ms, blocked_until in scopes:
        until = blocked_until if blocked_until is not None and blocked_until > now else now
        if rate_max is not None:
            window = Window(conn, scope_key(queue, group), rate_max, rate_ms, 1, now)
            until = max(until, window.free_at or now)
        if until > now:
            found[group] = until - now
    return found


def _candidates(rows: sqlite3.Cursor, queue: str, group: str | None) -> list[Candidate]:
    return [
        Candidate(priority, seq, id_, expires, queue, group) for priority, seq, id_, expires in rows
    ]


class Claim:
    """One claim's transaction (run on the writer thread)."""

    def __init__(self, conn: sqlite3.Connection, now: int) -> None:
        self.conn = conn
        self.now = now
        self.windows: dict[str, Window] = {}
        self.retry_at: int | None = None  # when a limit that held jobs back frees up
        self.held: dict[str, int] = {}  # queue or group scope -> until when it is held back
        self.rotated: set[str] = set()  # queues with groups: their members take turns

    def run(
        self, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[tuple[Any, ...]]:
        conn, now = self.conn, self.now
        queues = [queue for room in slots for queue in room.queues]
        conn.execute(
            "UPDATE jobs SET state = 'waiting' WHERE id IN (SELECT id FROM jobs"
            " WHERE state = 'delayed' AND run_at <= ? ORDER BY run_at LIMIT ?)",
            (now, PROMOTE_BATCH),
        )
        marks = placeholders(len(queues))
        settings = {row[0]: row for row in conn.execute(_QUEUE.format(marks), (*queues, now))}
        lists = [
            [self._queue(q, settings.get(q), room.free) for q in room.queues] for room in slots
        ]
        expired = {
            c.id
            for per_queue in lists
            for jobs in per_queue
            for c in jobs
            if c.expires_at is not None and c.expires_at <= now
        }
        if expired:
            conn.executemany(
                "UPDATE jobs SET state = 'cancelled', error = 'expired', finished_at = ?,"
                " expires_at = NULL WHERE id = ?",
                [(now, id_) for id_ in expired],
            )
            for id_ in expired:
                flows.settle(conn, id_, now)
            lists = [
                [[c for c in jobs if c.id not in expired] for jobs in per_queue]
                for per_queue in lists
            ]
        chosen = [
            job
            for room, per_queue in zip(slots, lists, strict=True)
            for job in claiming.merge_queues(per_queue, lambda c: (-c.priority, c.seq))[: room.free]
        ]
        if not chosen:
            self._note(
                conn.execute(
                    f"SELECT min(run_at) FROM jobs WHERE state = 'delayed' AND queue IN ({marks})",
                    tuple(queues),
                ).fetchone()[0]
            )
            return []
        if self.windows or self.rotated:
            self._account(chosen)
        ids = [c.id for c in chosen]
        rows = conn.execute(
            _LEASE.format(placeholders(len(ids))), (now + lease_ms, worker_id, now, *ids)
        ).fetchall()
        order = {id_: i for i, id_ in enumerate(ids)}
        rows.sort(key=lambda row: order[row[2]])
        return rows

    def _note(self, at: int | None) -> None:
        if at is not None and (self.retry_at is None or at < self.retry_at):
            self.retry_at = at

    def _window(self, scope: str, rate_max: int, rate_ms: int, want: int) -> int:
        """Room in a scope's rate window; a full one holds the scope until it frees."""
        window = Window(self.conn, scope, rate_max, rate_ms, want, self.now)
        self.windows[scope] = window
        self._note(window.free_at)
        if window.room <= 0 and window.free_at is not None:
            self.held[scope] = window.free_at
        return window.room

    def _queue(self, queue: str, settings: Any, limit: int) -> list[Candidate]:
        """The queue's candidates in the order it gives them (at most its room)."""
        conn, now = self.conn, self.now
        room = limit
        if settings is not None:
            _, paused, max_active, rate_max, rate_ms, blocked, *_ = settings
            if paused:
                return []
            if blocked is not None and blocked > now:
                self._note(blocked)
                self.held[scope_key(queue)] = blocked
                return []
            if max_active is not None:
                (active,) = conn.execute(
                    "SELECT count(*) FROM jobs WHERE state = 'active' AND queue = ?", (queue,)
                ).fetchone()
                room = min(room, max_active - active)
            if rate_max is not None and room > 0:
                room = self._window(scope_key(queue), rate_max, rate_ms, room)
        if room <= 0:
            return []
        members = [] if settings is None else self._members(queue, settings, room)
        if not members:
            return _candidates(conn.execute(_PLAIN, (queue, room)), queue, None)
        self.rotated.add(queue)
        picked = []
        for member, count in zip(members, claiming.allot(members, room), strict=True):
            if count:
                query, params = (
                    (_PLAIN, (queue, count))
                    if member.group is None
                    else (_GROUP_JOBS, (queue, member.group, count))
                )
                picked.append(_candidates(conn.execute(query, params), queue, member.group))
        return claiming.interleave(picked)

    def _members(self, queue: str, settings: Any, room: int) -> list[claiming.Member]:
        """The queue's rotation, in turn order: groups with waiting jobs and room,
        and its jobs without a group as one more member. Empty: no groups."""
        conn, now = self.conn, self.now
        members: list[claiming.Member] = []
        rows = conn.execute(_GROUPS, (queue,))
        first = rows.fetchone()
        if first is None:
            return []
        default, plain_turn = Stored(*settings[6:9]), settings[9]
        for row in (first, *rows):
            name, turn, waiting, active, *own, blocked = row
            if blocked is not None and blocked > now:
                self._note(blocked)
                continue
            group_room = room
            cap, rate_max, rate_ms = own_or_default(Stored(*own), default)
            if cap is not None:
                group_room = min(group_room, cap - active)
            if rate_max is not None and rate_ms is not None and group_room > 0:
                group_room = self._window(scope_key(queue, name), rate_max, rate_ms, group_room)
            if group_room > 0:
                members.append(claiming.Member(name, turn, waiting, group_room))
                if len(members) >= room:
                    break
        (plain,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'waiting' AND queue = ?"
            " AND grp IS NULL LIMIT ?)",
            (queue, room),
        ).fetchone()
        return claiming.rotation(members, plain_turn, plain, room)

    def _account(self, chosen: Sequence[Candidate]) -> None:
        """Log the starts against their rate windows and move the served
        members of grouped queues to the back of their rotation."""
        conn, now = self.conn, self.now
        starts: dict[str, int] = {}
        served: dict[str, list[str | None]] = {}
        for c in chosen:
            queue_key = scope_key(c.queue)
            starts[queue_key] = starts.get(queue_key, 0) + 1
            if c.group is not None:
                group_key = scope_key(c.queue, c.group)
                starts[group_key] = starts.get(group_key, 0) + 1
            if c.queue in self.rotated:
                served.setdefault(c.queue, []).append(c.group)
        for scope, count in starts.items():
            window = self.windows.get(scope)
            if window is not None:
                window.log(conn, count, now)
        if not served:
            return
        total = sum(len(s) for s in served.values())
        (last,) = conn.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value", (total,)
        ).fetchone()
        first = last - total + 1
        for queue, members in served.items():
            for member, turn in claiming.new_turns(members, first).items():
                if member is None:
                    conn.execute("UPDATE queues SET turn = ? WHERE name = ?", (turn, queue))
                else:
                    conn.execute(
                        "UPDATE groups SET turn = ? WHERE queue = ? AND name = ?",
                        (turn, queue, member),
                    )
            first += len(members)


def _run(
    conn: sqlite3.Connection,
    clock: Clock,
    slots: Sequence[QueueSlots],
    worker_id: str,
    lease_ms: int,
) -> tuple[list[tuple[Any, ...]], Claim]:
    transaction = Claim(conn, clock.now_ms())
    return transaction.run(slots, worker_id, lease_ms), transaction


async def claim(
    backend: State, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
) -> list[ClaimedJob]:
    """The contract's ``claim``: one ``Claim`` transaction, what it saw kept
    in ``backend.last_claim``, then its rows as jobs."""
    slots = [room for room in slots if room.free > 0 and room.queues]
    if not slots:
        return []
    limit = sum(room.free for room in slots)
    # The data version before a claim lets an idle wait skip a needless
    # look (see waiting.py); read only when this claim may well find too
    # little, as the last one of these queues did (it costs a few us).
    key = claim_key(queue for room in slots for queue in room.queues)
    last = backend.last_claim.get(key)
    version = backend.data_version() if last is None or last.short else None
    rows, done = await backend.write(_run, backend.clock, slots, worker_id, lease_ms)
    backend.last_claim[key] = LastClaim(version, done.retry_at, done.held, len(rows) < limit)
    claimed = await _jobs(backend, rows)
    if claimed:
        backend.last_work = time.monotonic()
    return claimed


async def _jobs(backend: State, rows: list[tuple[Any, ...]]) -> list[ClaimedJob]:
    """The leased rows as jobs, after the transaction rather than while it
    holds the lock; a row that cannot be read fails alone and the rest run."""
    claimed = []
    for row in rows:
        try:
            job = job_from_row(row[2:])
        except UnreadableRecord as exc:
            await backend.write(
                finishing.fail,
                backend.clock,
                job_id=row[2],
                token=row[1],
                error=unreadable(exc),
                traceback=None,
                retry_in_ms=None,
            )
            continue
        claimed.append(ClaimedJob(job=job, token=row[1], lease_expires_ms=row[0], payload=row[7]))
    return claimed
