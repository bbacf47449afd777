"""Idle waits, and the jobs an enqueue hands to them.

An idle worker blocks (``BLPOP``, on a connection of its own) on its
queues' marker lists and wakes when an enqueue, a promotion or a release
pushes to one. A wait that says who takes its jobs (``Taker``) also
registers, in the peek before it blocks, in its queues' ``idle`` sets,
and blocks on a list of its own too: an enqueue may claim a job for that
wait's worker and push the claim's reply there (``enqueue-3.lua``). The wait
leaves the sets when it ends (``leave-1.lua``), taking the jobs handed to it
meanwhile; a registration that could not be left (the store went away
mid-way) is kept in ``RedisConnection.left`` and left by the next claim or
wait, and so, after an outage, are those left lately (a restart may bring
back one whose leave it lost: ``RedisConnection.outage``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from conveyor.backends.redis import claims, finishing
from conveyor.backends.redis.connection import BLOCK_MAX_S, RedisConnection, mapped_errors
from conveyor.backends.redis.peek import Look, Registration, peek
from conveyor.backends.values import ClaimedJob, Taker
from conveyor.errors import BackendError

log = logging.getLogger("conveyor.redis")

CANCEL_WAIT_S = 1.0  # a cancelled wait's block, ended by a push, gets this long
WAKE_TTL_MS = 10_000  # a wake pushed after its wait ended anyway goes this soon
REGISTRATION_MARGIN_MS = 1000  # an idle wait's registration outlives its block this long

Popped = tuple[bytes, bytes]  # the list and the element BLPOP took


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _registration(wake: str, wait: float, taker: Taker | None) -> Registration | None:
    """An idle wait's registration, blocking on ``wake`` for ``wait`` seconds."""
    if taker is None or not taker.queues:
        return None
    member = "\0".join((wake, taker.worker_id, str(taker.lease_ms)))
    ttl_ms = round(wait * 1000) + REGISTRATION_MARGIN_MS
    return Registration(member, frozenset(taker.queues), ttl_ms)


async def wait_for_jobs(
    conn: RedisConnection, *, queues: Sequence[str], timeout_s: float, taker: Taker | None = None
) -> list[ClaimedJob]:
    handed = await handed_meanwhile(conn)
    if handed:
        return handed
    wait = min(timeout_s, BLOCK_MAX_S)
    wake = conn.keys.wake(os.urandom(6).hex())
    registration = _registration(wake, wait, taker)
    markers = {conn.keys.marker(q): q for q in queues}
    block = None
    timer = None
    try:
        now, looks = await peek(conn, [(queue, 0) for queue in queues], registration)
        due_in = _due_in(conn, now, looks, queues, wait)
        if due_in <= 0:
            return await leave(conn, wake, registration)
        # The block also ends when something is pushed to a list only this
        # wait watches: by a timer of ours at the due time (Redis times a
        # block out only at its own clock ticks, ten a second by default),
        # when the wait is cancelled (cutting a blocked connection would
        # cost a reconnect), and by an enqueue that hands us a job.
        block = asyncio.ensure_future(conn.block([*markers, wake], wait))
        block.add_done_callback(_retrieved)  # its error is raised here, or not wanted
        if due_in < wait:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(due_in, lambda: conn.spawn(_push_wake(conn, wake)))
        popped = await asyncio.shield(block)
    except asyncio.CancelledError:
        if block is not None and not block.done():
            await _push_wake(conn, wake)
            await asyncio.wait([block], timeout=CANCEL_WAIT_S)
        await _give_back(conn, wake, registration, block)
        raise
    except BaseException as exc:
        if registration is not None and (wake, registration) not in conn.left:
            conn.left.append((wake, registration))  # the next claim or wait ends it
        if isinstance(exc, BackendError):  # the block, not a script, failed: as run does
            conn.outage()
        raise
    finally:
        if timer is not None:
            timer.cancel()
    return await _woken(conn, popped, wake, registration, markers)


async def _woken(
    conn: RedisConnection,
    popped: Popped | None,
    wake: str,
    registration: Registration | None,
    markers: dict[str, str],
) -> list[ClaimedJob]:
    """After the block: the job an enqueue handed us (the next claim or
    wait leaves the other queues' sets), or nothing, the wait having left."""
    if popped is not None and popped[1] != b"1":
        key = popped[0].decode()
        if key == wake:  # an enqueue handed us a job
            if registration is not None and len(registration.queues) > 1:
                conn.left.append((wake, registration))  # still in the other queues' sets
            return await _handed(conn, [popped[1]])
        if key in markers:  # an enqueue named the job
            conn.hints[markers[key]] = popped[1].decode()
    return await leave(conn, wake, registration)


def _due_in(
    conn: RedisConnection, now: int, looks: Sequence[Look], queues: Sequence[str], wait: float
) -> float:
    """Seconds until the soonest of: the next delayed job, a hold or full
    rate window of a queue, a group held back at the last claim (``wait``
    if none)."""
    times = [look.due for look in looks if look.due >= 0]
    times += [look.held for look in looks if look.held >= 0]
    retry_at = conn.retry_at.get(tuple(queues))
    if retry_at is not None and retry_at > now:
        times.append(retry_at)
    return max(0.0, (min(times) - now) / 1000) if times else wait


async def _handed(conn: RedisConnection, replies: Sequence[bytes]) -> list[ClaimedJob]:
    """Jobs an enqueue leased to us, from the replies it pushed (JSON)."""
    handed = []
    for reply in replies:
        token, expires, fields, job_id, queue = json.loads(reply)
        values = [None if value is False else value.encode() for value in fields]
        job = await claims.claimed_job(conn, job_id, queue, token, expires, values)
        if job is not None:
            handed.append(job)
    return handed


async def leave(
    conn: RedisConnection, wake: str, registration: Registration | None
) -> list[ClaimedJob]:
    """End an idle wait's registration: the jobs handed to it meanwhile."""
    if registration is None:
        return []
    keys = [wake, *(conn.keys.queue(queue, "idle") for queue in registration.queues)]
    try:
        replies = await conn.run("leave", keys, [registration.member])
    except BaseException:  # the next claim or wait leaves it: a job may be handed to it
        if (wake, registration) not in conn.left:
            conn.left.append((wake, registration))
        raise
    now = time.monotonic()  # remembered while a restart could bring it back (conn.outage)
    conn.recent = [r for r in conn.recent if r[0] > now]
    conn.recent.append((now + registration.ttl_ms / 1000 + 1, wake, registration))
    return await _handed(conn, replies)


async def handed_meanwhile(conn: RedisConnection) -> list[ClaimedJob]:
    """Jobs handed to past waits that did not return them: after the one a
    wait returned, or to a wait that failed (the store went away)."""
    handed: list[ClaimedJob] = []
    while conn.left:  # an error here fails the claim or wait (retried): leave keeps it
        handed += await leave(conn, *conn.left.pop(0))
    return handed


async def _give_back(
    conn: RedisConnection,
    wake: str,
    registration: Registration | None,
    block: asyncio.Future[Popped | None] | None,
) -> None:
    """A cancelled wait releases the jobs handed to it."""
    try:
        handed = await leave(conn, wake, registration)
        if block is not None and block.done() and not block.cancelled():
            popped = block.exception() is None and block.result()
            if popped and popped[0].decode() == wake and popped[1] != b"1":
                handed += await _handed(conn, [popped[1]])
        for job in handed:
            await finishing.release(conn, job_id=job.job.id, token=job.token)
    except BackendError as exc:  # the next claim or wait takes them
        log.warning("could not release jobs handed to a cancelled wait: %s", exc)
        if registration is not None and (wake, registration) not in conn.left:
            conn.left.append((wake, registration))
    finally:
        if block is not None:
            block.cancel()


async def _push_wake(conn: RedisConnection, key: str) -> None:
    try:
        async with mapped_errors(), conn.client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, "1")
            pipe.pexpire(key, WAKE_TTL_MS)
            await pipe.execute()
    except BackendError as exc:  # the block times out anyway, a moment later
        log.debug("could not end an idle wait early: %s", exc)
