"""The Redis job store: for more than one machine.

URL: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or
``unix:///path/to/socket``; ``?namespace=NAME`` picks the key namespace
(default ``conveyor``; see ``keys.py`` for the layout and why one namespace
is one hash tag); ``?cluster=true`` connects to a Redis Cluster through any
of its nodes.

Every state change is one Lua script (``scripts/``), and every script takes
"now" from the server's ``TIME`` plus the clock's test offset, so workers'
clocks never decide anything. Where a script must touch jobs chosen by what
is stored (claims, promotion, reclaiming, trimming), the caller first peeks
candidate ids with a read-only command and the script then re-checks each
candidate atomically: a job taken meanwhile by another worker is skipped, so
a stale peek costs a retry, never a double claim. That keeps every key in
``KEYS`` (Cluster-safe) without reading in one round trip and acting on the
read in the next.

Idle workers block on a per-queue marker list (``BLPOP``) on a connection of
their own, and wake when an enqueue, a promotion or a release pushes to it.
A wait also registers in its queues' ``idle`` sets and blocks on a list of
its own, to which an enqueue may push a job it claimed for that wait's
worker (``enqueue-3.lua``); the wait leaves the sets when it ends.

Groups and flows keep every key static per queue: grouped waiting jobs sit
in one lexically ordered set per queue (see ``lib.lua``), and a finished flow
child's outcome is written to an outbox by the child's own script, then
applied to its parent by ``settle-10.lua`` (right away by the worker that
finished the child, or by any worker's chore within a second).
``connection.py`` holds the clients and script calls; ``claims.py`` the claim.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from conveyor.backends.base import KEEP_ALL, PROMOTE_BATCH, unreadable
from conveyor.backends.claiming import Member
from conveyor.backends.redis import claims
from conveyor.backends.redis.connection import (
    BLOCK_MAX_S,
    RedisConnection,
    mapped_errors,
)
from conveyor.backends.redis.keys import FINISHED
from conveyor.backends.redis.record import (
    encode_data,
    job_from_fields,
    retention_member,
)
from conveyor.backends.redis.scripts import Code
from conveyor.backends.rows import UnreadableRecord
from conveyor.backends.values import (
    ClaimedJob,
    NewJob,
    ProgressUpdate,
    QueueSlots,
    ReclaimResult,
    Taker,
    WorkerInfo,
)
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.job import JobState, Retention

log = logging.getLogger("conveyor.redis")

CANCEL_WAIT_S = 1.0  # a cancelled wait's block, ended by a push, gets this long
WAKE_TTL_MS = 10_000  # a wake pushed after its wait ended anyway goes this soon
REGISTRATION_MARGIN_MS = 1000  # an idle wait's registration outlives its block this long
TRIM_LOCK_MS = 30_000  # a trimmer that died keeps others out this long at most
BATCH = 1000  # jobs per round of bulk retries and cleaning
DEDUP_TRIES = 50  # batches whose peeked dedup keys changed meanwhile


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _registration(wake: str, wait: float, taker: Taker | None) -> claims.Registration | None:
    """An idle wait's registration, blocking on ``wake`` for ``wait`` seconds."""
    if taker is None or not taker.queues:
        return None
    member = "\0".join((wake, taker.worker_id, str(taker.lease_ms)))
    ttl_ms = round(wait * 1000) + REGISTRATION_MARGIN_MS
    return claims.Registration(member, frozenset(taker.queues), ttl_ms)


def _tracked(retention: Retention, queue: str, job_id: str) -> str:
    """The retention member to record, or '' when nothing will ever be trimmed."""
    return retention_member(queue, job_id) if retention.limited else ""


class RedisTransitions(RedisConnection):
    """Every transition a worker or producer makes; ``RedisBackend`` adds
    reading and managing jobs."""

    # -- producers -------------------------------------------------------------

    async def enqueue(self, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
        if not jobs:
            return []
        k = self.keys
        queues: dict[str, int] = {}
        dedup: dict[str, int] = {}  # dedup key -> its index in the batch
        debounced: set[str] = set()  # dedup keys whose last job may be replaced
        rows: list[list[Any]] = []
        for job in jobs:
            parent = job.parent
            row: list[Any] = [
                job.id,
                queues.setdefault(job.queue, len(queues)),
                job.priority,
                int(job.lifo),
                job.delay_ms,
                job.run_at_ms,
                job.ttl_ms,
                job.group,
                None if parent is None else parent.id,
                job.on_failure,
                job.children,
                job.task,
                job.flow_id,
            ]
            if job.dedup_key is not None:
                row += [
                    dedup.setdefault(job.dedup_key, len(dedup)),
                    job.dedup_ttl_ms,
                    int(job.debounce),
                ]
                if job.debounce:
                    debounced.add(job.dedup_key)
            rows.append(row)
        keys = [k.seq, k.queues, k.limits]
        for queue in queues:
            keys += [
                k.state(queue, "waiting"),
                k.state(queue, "delayed"),
                k.marker(queue),
                k.queue(queue, "gwaiting"),
                k.queue(queue, "groups"),
                k.state(queue, "waiting_children"),
                k.queue(queue, "idle"),
                k.state(queue, "active"),
            ]
        keys += [k.job(job.id) for job in jobs]
        args = [
            self._offset,
            len(queues),
            *queues,
            msgspec.json.encode(rows),
            *(encode_data(job) for job in jobs),
        ]
        if not dedup:
            created = await self._run("enqueue", keys, args)
            return [(job.id, bool(c)) for job, c in zip(jobs, created, strict=True)]
        for _ in range(DEDUP_TRIES):
            # The jobs a debounce may replace are peeked first (their keys must
            # be in KEYS); the script re-checks each peek. If one changed, a
            # debounce with the key ran meanwhile: a lone job counts as
            # enqueued just before it (replaced, the handle naming the job that
            # replaced it); a batch gets -1, nothing written, and peeks again.
            more, entries = self._dedup_keys(dedup, await self._peek_dedup(debounced), len(keys))
            added = await self._run("enqueue", keys + more, [*args, msgspec.json.encode(entries)])
            if added != Code.PEEK_CHANGED:
                return [
                    (c.decode(), False) if isinstance(c, bytes) else (job.id, bool(c))
                    for job, c in zip(jobs, added, strict=True)
                ]
        raise BackendError(f"dedup keys changed under {DEDUP_TRIES} enqueues in a row")

    async def _peek_dedup(self, keys: Iterable[str]) -> dict[str, tuple[str, str] | None]:
        """The job (id, queue) each dedup key names now, read without a script."""
        if self._client is None:
            await self.connect()
        names = list(keys)
        async with mapped_errors():
            found = await asyncio.gather(
                *(self.client.hmget(self.keys.dedup(key), "job", "queue") for key in names)
            )
        return {
            key: None if job_id is None else (job_id.decode(), queue.decode())
            for key, (job_id, queue) in zip(names, found, strict=True)
        }

    def _dedup_keys(
        self, dedup: dict[str, int], peeked: dict[str, tuple[str, str] | None], first: int
    ) -> tuple[list[str], list[list[Any]]]:
        """KEYS after the first ``first`` and the entries of enqueue-3.lua's last ARGV."""
        k = self.keys
        more: list[str] = []
        entries: list[list[Any]] = []
        for key in dedup:  # in index order (dicts keep insertion order)
            more.append(k.dedup(key))
            entry: list[Any] = [first + len(more), None, 0]
            if key in peeked:
                seen = peeked[key]
                entry[1] = "" if seen is None else seen[0]
                if seen is not None:
                    job_id, queue = seen
                    entry[2] = first + len(more) + 1
                    more += [
                        k.job(job_id),
                        k.logs(job_id),
                        k.state(queue, "waiting"),
                        k.state(queue, "delayed"),
                        k.queue(queue, "gwaiting"),
                        k.queue(queue, "groups"),
                    ]
            entries.append(entry)
        return more, entries

    # -- workers ---------------------------------------------------------------

    async def claim(
        self, *, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        handed = await self._handed_meanwhile()
        for job in handed:  # they take their room first
            at = next((i for i, room in enumerate(slots) if job.job.queue in room.queues), None)
            if at is not None:
                slots = [*slots[:at], slots[at]._replace(free=slots[at].free - 1), *slots[at + 1 :]]
        return handed + await self._claim(slots, worker_id, lease_ms)

    async def _claim(
        self, slots: Sequence[QueueSlots], worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        slots = [room for room in slots if room.free > 0 and room.queues]
        if not slots:
            return []
        if self._client is None:
            await self.connect()
        rooms = [(queue, room.free) for room in slots for queue in room.queues]
        queues = [queue for queue, _ in rooms]
        hinted = [
            claims.Candidate(0.0, self._hints.pop(queue), queue)
            for room in slots
            for queue in room.queues[: room.free]
            if queue in self._hints
        ]
        if hinted:  # woken by an enqueue that named its only waiting job: no look needed
            claimed = await self._lease(hinted, lease_ms, worker_id)
            if claimed:
                return claimed
        for _ in range(2):  # a second look after promoting due delayed jobs
            now, looks = await self._peek(rooms)
            due = [q for q, look in zip(queues, looks, strict=True) if 0 <= look.due <= now]
            if not due or not await self._promote_due(due):
                break
        planned = claims.allotments(queues, looks)
        group_jobs = await self._group_jobs(planned) if planned else {}
        chosen = claims.candidates(slots, looks, planned, group_jobs)
        self._retry_at[tuple(queues)] = claims.retry_at(looks)
        if not chosen:
            return []
        return await self._lease(chosen, lease_ms, worker_id)

    async def _lease(
        self, chosen: Sequence[claims.Candidate], lease_ms: int, worker_id: str
    ) -> list[ClaimedJob]:
        """Claim the candidates that are still waiting and within every limit."""
        keys, args = claims.claim_call(self.keys, chosen, self._offset, lease_ms, worker_id)
        taken, expired = await self._run("claim", keys, args)
        for job_id in expired:
            await self._cancel(job_id.decode(), reason="expired", expired_only=True)
        queue_of = {c.id: c.queue for c in chosen}
        claimed = []
        for token, expires, values, job_id in taken:
            job_id = job_id.decode()
            job = await self._claimed(job_id, queue_of[job_id], token.decode(), expires, values)
            if job is not None:
                claimed.append(job)
        return claimed

    async def _claimed(
        self, job_id: str, queue: str, token: str, expires: Any, values: Sequence[Any]
    ) -> ClaimedJob | None:
        """A job leased to us, from a claim's reply (``lease`` in lib.lua);
        None for one whose record cannot be read: it fails on its own."""
        try:
            job, arguments = job_from_fields(values, job_id)
        except UnreadableRecord as exc:
            self._owned[job_id] = (queue, "")  # its task is unknown: no retention to keep
            await self.fail(
                job_id=job_id,
                token=token,
                error=unreadable(exc),
                traceback=None,
                retry_in_ms=None,
                retention=KEEP_ALL,
            )
            return None
        self._owned[job.id] = (job.queue, job.task)
        if job.group is None and job.parent_id is None:
            self._lean.add(job.id)
        return ClaimedJob(job=job, token=token, lease_expires_ms=int(expires), payload=arguments)

    async def _peek(
        self, rooms: Sequence[tuple[str, int]], registration: claims.Registration | None = None
    ) -> tuple[int, list[claims.Look]]:
        """Server time, and how each queue looks (see ``claims.Look``) to a
        claim with the room given in it (and an idle wait registered)."""
        keys, args = claims.peek_call(self.keys, rooms, self._offset, registration)
        return claims.parse_peek(await self._run("peek", keys, args))

    async def _group_jobs(
        self, planned: Sequence[tuple[str, Sequence[Member], Sequence[int]]]
    ) -> dict[tuple[str, str], list[claims.Candidate]]:
        """The first waiting jobs of each group that a claim allotted jobs to."""
        wanted = [
            (queue, member.group, count)
            for queue, members, counts in planned
            for member, count in zip(members, counts, strict=True)
            if count and member.group is not None
        ]
        found = await self._first_of_groups(wanted)
        return {(queue, group): jobs for (queue, group, _), jobs in zip(wanted, found, strict=True)}

    async def _first_of_groups(
        self, wanted: Sequence[tuple[str, str, int]]
    ) -> list[list[claims.Candidate]]:
        """For each ``(queue, group, n)``: the group's first ``n`` waiting jobs."""
        if not wanted:
            return []
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for queue, group, count in wanted:
                pipe.zrangebylex(
                    self.keys.queue(queue, "gwaiting"), f"[{group}\0", f"({group}\1", 0, count
                )
            replies = await pipe.execute()
        return [
            claims.group_candidates(members, queue)
            for (queue, _, _), members in zip(wanted, replies, strict=True)
        ]

    async def _cancel(self, job_id: str, *, reason: str, expired_only: bool = False) -> bool:
        """Cancel an unfinished job, with ``reason`` as its error (with
        ``expired_only``: only a waiting job past its TTL deadline)."""
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue, task = identity
        k = self.keys
        keys = [
            k.job(job_id),
            k.state(queue, "waiting"),
            k.state(queue, "delayed"),
            k.state(queue, "active"),
            k.state(queue, "cancelled"),
            k.done(task, "cancelled"),
            k.queue(queue, "gwaiting"),
            k.queue(queue, "groups"),
            k.queue(queue, "gactive"),
            k.state(queue, "waiting_children"),
            k.outbox,
        ]
        args = [
            self._offset,
            retention_member(queue, job_id),
            job_id,
            reason,
            "1" if expired_only else "",
        ]
        return await self._fenced("cancel", keys, args)

    async def _promote_due(self, queues: Iterable[str]) -> int:
        """Promote a batch of due delayed jobs in each queue; returns how many moved."""
        k = self.keys
        moved = 0
        for queue in queues:
            async with mapped_errors():
                delayed = await self.client.zrange(k.state(queue, "delayed"), 0, PROMOTE_BATCH - 1)
            ids = [m.decode() for m in delayed]
            if ids:
                keys = [
                    k.state(queue, "delayed"),
                    k.state(queue, "waiting"),
                    k.marker(queue),
                    k.queue(queue, "gwaiting"),
                    k.queue(queue, "groups"),
                ]
                result = await self._run(
                    "promote", keys + [k.job(i) for i in ids], [self._offset, 0, *ids]
                )
                moved += int(result[0])
        return moved

    async def wait_for_jobs(
        self, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
    ) -> list[ClaimedJob]:
        handed = await self._handed_meanwhile()
        if handed:
            return handed
        wait = min(timeout_s, BLOCK_MAX_S)
        wake = self.keys.wake(os.urandom(6).hex())
        registration = _registration(wake, wait, taker)
        markers = {self.keys.marker(q): q for q in queues}
        block = None
        timer = None
        try:
            now, looks = await self._peek([(queue, 0) for queue in queues], registration)
            due_in = self._due_in(now, looks, queues, wait)
            if due_in <= 0:
                return await self._leave(wake, registration)
            # The block also ends when something is pushed to a list only this
            # wait watches: by a timer of ours at the due time (Redis times a
            # block out only at its own clock ticks, ten a second by default),
            # when the wait is cancelled (cutting a blocked connection would
            # cost a reconnect), and by an enqueue that hands us a job.
            block = asyncio.ensure_future(self._block([*markers, wake], wait))
            block.add_done_callback(_retrieved)  # its error is raised here, or not wanted
            if due_in < wait:
                loop = asyncio.get_running_loop()
                timer = loop.call_later(due_in, lambda: self._spawn(self._push_wake(wake)))
            popped = await asyncio.shield(block)
        except asyncio.CancelledError:
            if block is not None and not block.done():
                await self._push_wake(wake)
                await asyncio.wait([block], timeout=CANCEL_WAIT_S)
            await self._give_back(wake, registration, block)
            raise
        except BaseException:
            if registration is not None:  # the next claim or wait ends it
                self._left.append((wake, registration))
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return await self._woken(popped, wake, registration, markers)

    async def _woken(
        self,
        popped: tuple[bytes, bytes] | None,
        wake: str,
        registration: claims.Registration | None,
        markers: dict[str, str],
    ) -> list[ClaimedJob]:
        """After the block: the job an enqueue handed us (the next claim or
        wait leaves the other queues' sets), or nothing, the wait having left."""
        if popped is not None and popped[1] != b"1":
            key = popped[0].decode()
            if key == wake:  # an enqueue handed us a job
                if registration is not None and len(registration.queues) > 1:
                    self._left.append((wake, registration))  # still in the other queues' sets
                return await self._handed([popped[1]])
            if key in markers:  # an enqueue named the job
                self._hints[markers[key]] = popped[1].decode()
        return await self._leave(wake, registration)

    def _due_in(
        self, now: int, looks: Sequence[claims.Look], queues: Sequence[str], wait: float
    ) -> float:
        """Seconds until the soonest of: the next delayed job, a hold or full
        rate window of a queue, a group held back at the last claim (``wait``
        if none)."""
        times = [look.due for look in looks if look.due >= 0]
        times += [look.held for look in looks if look.held >= 0]
        retry_at = self._retry_at.get(tuple(queues))
        if retry_at is not None and retry_at > now:
            times.append(retry_at)
        return max(0.0, (min(times) - now) / 1000) if times else wait

    async def _handed(self, replies: Sequence[bytes]) -> list[ClaimedJob]:
        """Jobs an enqueue leased to us, from the replies it pushed (JSON)."""
        handed = []
        for reply in replies:
            token, expires, fields, job_id, queue = json.loads(reply)
            values = [None if value is False else value.encode() for value in fields]
            job = await self._claimed(job_id, queue, token, expires, values)
            if job is not None:
                handed.append(job)
        return handed

    async def _leave(self, wake: str, registration: claims.Registration | None) -> list[ClaimedJob]:
        """End an idle wait's registration: the jobs handed to it meanwhile."""
        if registration is None:
            return []
        keys = [wake, *(self.keys.queue(queue, "idle") for queue in registration.queues)]
        return await self._handed(await self._run("leave", keys, [registration.member]))

    async def _handed_meanwhile(self) -> list[ClaimedJob]:
        """Jobs handed to past waits that did not return them: after the one a
        wait returned, or to a wait that failed (the store went away)."""
        handed: list[ClaimedJob] = []
        while self._left:  # an error here fails the claim or wait: retried
            handed += await self._leave(*self._left[0])
            del self._left[0]
        return handed

    async def _give_back(
        self,
        wake: str,
        registration: claims.Registration | None,
        block: asyncio.Future[tuple[bytes, bytes] | None] | None,
    ) -> None:
        """A cancelled wait releases the jobs handed to it."""
        try:
            handed = await self._leave(wake, registration)
            if block is not None and block.done() and not block.cancelled():
                popped = block.exception() is None and block.result()
                if popped and popped[0].decode() == wake and popped[1] != b"1":
                    handed += await self._handed([popped[1]])
            for job in handed:
                await self.release(job_id=job.job.id, token=job.token)
        except BackendError as exc:  # the next claim or wait takes them
            log.warning("could not release jobs handed to a cancelled wait: %s", exc)
            if registration is not None:
                self._left.append((wake, registration))
        finally:
            if block is not None:
                block.cancel()

    async def _block(self, keys: Sequence[str], timeout: float) -> tuple[bytes, bytes] | None:
        """``BLPOP``: the list and element popped, or None at the timeout."""
        assert self._blocking is not None
        async with mapped_errors():
            popped: tuple[bytes, bytes] | None = await self._blocking.blpop(keys, timeout=timeout)
            return popped

    async def _push_wake(self, key: str) -> None:
        try:
            async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(key, "1")
                pipe.pexpire(key, WAKE_TTL_MS)
                await pipe.execute()
        except BackendError as exc:  # the block times out anyway, a moment later
            log.debug("could not end an idle wait early: %s", exc)

    def extend_leases_blocking(
        self, *, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[tuple[str, str]]:
        def queue_of(job_id: str) -> str | None:
            known = self._owned.get(job_id)
            return None if known is None else known[0]

        return self._renewer.extend(leases, queue_of, self._offset, lease_ms)

    async def complete(
        self, *, job_id: str, token: str, result: bytes, retention: Retention
    ) -> bool:
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue, task = identity
        k = self.keys
        keys = [
            k.job(job_id),
            k.state(queue, "active"),
            k.state(queue, "completed"),
            k.done(task, "completed"),
        ]
        lean = job_id in self._lean  # no group or flow to tell: two keys fewer
        if not lean:
            keys += [k.queue(queue, "gactive"), k.outbox]
        args = [
            self._offset,
            token,
            result,
            _tracked(retention, queue, job_id),
            job_id,
            "" if lean else "1",
        ]
        (code,) = await self._run("complete", keys, args)
        if int(code) != Code.DONE:
            return False
        self._forget(job_id)
        return True

    def _forget(self, job_id: str) -> None:
        """A job claimed here is done with (or given back)."""
        self._owned.pop(job_id, None)
        self._lean.discard(job_id)

    async def fail(
        self,
        *,
        job_id: str,
        token: str,
        error: str,
        traceback: str | None,
        retry_in_ms: int | None,
        retention: Retention,
    ) -> bool:
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue, task = identity
        k = self.keys
        keys = [
            k.job(job_id),
            k.state(queue, "active"),
            k.state(queue, "delayed"),
            k.state(queue, "failed"),
            k.done(task, "failed"),
            k.queue(queue, "gactive"),
            k.outbox,
            k.marker(queue),
        ]
        retry = "" if retry_in_ms is None else retry_in_ms
        args = [
            self._offset,
            token,
            error,
            traceback or "",
            retry,
            _tracked(retention, queue, job_id),
            job_id,
        ]
        if not await self._fenced("fail", keys, args):
            return False
        self._forget(job_id)
        return True

    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue = identity[0]
        k = self.keys
        keys = [
            k.job(job_id),
            k.state(queue, "active"),
            k.state(queue, "waiting"),
            k.marker(queue),
            k.queue(queue, "gwaiting"),
            k.queue(queue, "groups"),
            k.queue(queue, "gactive"),
            k.limits,
        ]
        args = [
            self._offset,
            token,
            job_id,
            "" if block_ms is None else block_ms,
            int(block_group),
            queue,
        ]
        released = await self._fenced("release", keys, args)
        self._forget(job_id)
        return released

    async def apply_outcomes(self, *, child_ids: Sequence[str] | None, limit: int) -> int:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            if child_ids is None:
                _, found = await self.client.hscan(self.keys.outbox, 0, count=limit)
                due = [(child.decode(), entry) for child, entry in list(found.items())[:limit]]
            else:
                entries = await self.client.hmget(self.keys.outbox, list(child_ids))
                due = [(c, e) for c, e in zip(child_ids, entries, strict=True) if e is not None]
        applied = 0
        for child_id, entry in due:
            parent_id = entry.split(b"\0", 1)[0].decode()
            try:
                while True:  # a parent failed by its child owes its own parent an outcome
                    code = await self._settle(child_id, parent_id)
                    applied += code != Code.STALE
                    if code != Code.PARENT_FAILED:
                        break
                    async with mapped_errors():
                        owed = await self.client.hget(self.keys.outbox, parent_id)
                    if owed is None:
                        break
                    child_id, parent_id = parent_id, owed.split(b"\0", 1)[0].decode()
            except BackendUnavailable:
                raise
            except BackendError as exc:  # one bad entry must not hold up the others
                log.warning("outcome of job %s for its parent not applied: %s", child_id, exc)
        return applied

    async def _settle(self, child_id: str, parent_id: str) -> Code:
        queue, task = await self._identity(parent_id) or ("", "")  # gone: the entry is dropped
        k = self.keys
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
        args = [self._offset, child_id, parent_id, retention_member(queue, parent_id)]
        return Code(int(await self._run("settle", keys, args)))

    async def report_progress(self, *, job_id: str, token: str, update: ProgressUpdate) -> bool:
        keys = [self.keys.job(job_id), self.keys.logs(job_id)]
        args = [
            self._offset,
            token,
            "" if update.progress is None else update.progress,
            "" if update.detail is None else msgspec.json.encode(update.detail),
            *update.logs,
        ]
        return await self._fenced("progress", keys, args)

    async def expired_leases(self, *, limit: int) -> list[tuple[str, int]]:
        """Oldest first within each queue."""
        now = await self._now()
        found: list[tuple[str, int]] = []
        for queue in await self._queue_names():
            async with mapped_errors():
                leases = await self.client.zrange(
                    self.keys.state(queue, "active"),
                    0,
                    f"({now}",
                    byscore=True,
                    offset=0,
                    num=limit - len(found),
                    withscores=True,
                )
            for member, expiry in leases:
                found.append((member.decode(), int(expiry)))
                self._lease_queues[member.decode()] = queue
            if len(found) >= limit:
                break
        return found

    async def reclaim_expired(
        self, *, max_stalls: int, limit: int, suspects: Sequence[tuple[str, int]] | None = None
    ) -> ReclaimResult:
        if suspects is None:  # whatever has expired, whatever its expiry
            seen: list[tuple[str, int | str]] = [
                (job_id, "") for job_id, _ in await self.expired_leases(limit=limit)
            ]
        else:
            seen = list(suspects[:limit])
        if not seen:
            return ReclaimResult(requeued=[], failed=[])
        k = self.keys
        by_queue: dict[str, list[tuple[str, str, int | str]]] = {}
        identities = await self._identities([job_id for job_id, _ in seen])
        orphans: list[tuple[str, str]] = []
        for (job_id, expiry), identity in zip(seen, identities, strict=True):
            if identity == ("", "") and job_id in self._lease_queues:  # unreadable: its
                identity = (self._lease_queues[job_id], "")  # queue is known, no retention
            if identity is not None and identity[0]:
                queue, task = identity
                by_queue.setdefault(queue, []).append((job_id, task, expiry))
            elif job_id in self._lease_queues:  # the job's hash is gone (evicted, deleted)
                orphans.append((self._lease_queues[job_id], job_id))
        self._lease_queues.clear()
        async with mapped_errors():
            for queue, job_id in orphans:  # else it would fill every check's limit forever
                await self.client.zrem(k.state(queue, "active"), job_id)
        requeued: list[str] = []
        failed: list[str] = []
        for queue, jobs in by_queue.items():
            keys = [
                k.state(queue, "active"),
                k.state(queue, "waiting"),
                k.state(queue, "failed"),
                k.marker(queue),
                k.queue(queue, "gwaiting"),
                k.queue(queue, "groups"),
                k.queue(queue, "gactive"),
                k.outbox,
            ]
            args: list[Any] = [self._offset, max_stalls]
            for job_id, task, expiry in jobs:
                keys += [k.job(job_id), k.done(task, "failed"), k.logs(job_id)]
                args += [job_id, retention_member(queue, job_id), expiry]
            back, dead = await self._run("reclaim", keys, args)
            requeued += [i.decode() for i in back]
            failed += [i.decode() for i in dead]
        return ReclaimResult(requeued=requeued, failed=failed)

    async def trim_finished(
        self, *, task: str, state: JobState, retention: Retention, limit: int
    ) -> int | None:
        """Two script calls: one takes the task's trim lock and picks the jobs
        beyond retention, the next deletes them (re-checking each) and lets go."""
        if not retention.limited:
            return 0
        k = self.keys
        lock, done = k.trim_lock(task, state), k.done(task, state)
        token = os.urandom(8).hex()
        count = "" if retention.max_count is None else retention.max_count
        age = "" if retention.max_age_s is None else int(retention.max_age_s * 1000)
        args: list[Any] = [self._offset, token, TRIM_LOCK_MS, count, age, limit]
        picked = await self._run("overflow", [lock, done], args)
        if not picked:
            return None
        cutoff, members = picked
        if not members:
            return 0
        keys, args = [lock, done], [token, state.value, count, cutoff]
        for member in members:
            queue, _, job_id = member.decode().partition("\0")
            keys += [k.job(job_id), k.logs(job_id), k.state(queue, state), k.outcomes(job_id)]
            args += [member, job_id]
        return int(await self._run("trim", keys, args))

    async def _remove(
        self, job_id: str, queue: str, task: str, *, state: str = "", latest: int | None = None
    ) -> bool:
        k = self.keys
        keys = [
            k.job(job_id),
            k.logs(job_id),
            k.state(queue, "waiting"),
            k.state(queue, "delayed"),
            *(k.state(queue, s) for s in FINISHED),
            *(k.done(task, s) for s in FINISHED),
            k.queue(queue, "gwaiting"),
            k.queue(queue, "groups"),
            k.state(queue, "waiting_children"),
            k.outbox,
            k.outcomes(job_id),
        ]
        args = [retention_member(queue, job_id), state, "" if latest is None else latest, job_id]
        return await self._fenced("remove", keys, args)

    async def record_worker(self, *, worker: WorkerInfo | None, worker_id: str) -> None:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            if worker is None:
                await self.client.hdel(self.keys.workers, worker_id)
            else:
                await self.client.hset(self.keys.workers, worker_id, msgspec.json.encode(worker))
