"""Adding jobs: one ``enqueue-3.lua`` call per batch, all of it or nothing.

A batch with dedup keys that debounce takes a peek first: the job each such
key names now, whose keys the script must be given to replace it. The
script re-checks every peek; if one changed (a debounce with the key ran
meanwhile), a lone job counts as enqueued just before it (replaced, the
handle naming the job that replaced it) and a batch gets
``Code.PEEK_CHANGED``, nothing written, and peeks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.backends.redis.keys import Keys
from conveyor.backends.redis.record import encode_data
from conveyor.backends.redis.scripts import Code
from conveyor.backends.values import NewJob
from conveyor.errors import BackendError

DEDUP_TRIES = 50  # batches whose peeked dedup keys changed meanwhile


async def enqueue(conn: RedisConnection, *, jobs: Sequence[NewJob]) -> list[tuple[str, bool]]:
    if not jobs:
        return []
    queues: dict[str, int] = {}
    dedup: dict[str, int] = {}  # dedup key -> its index in the batch
    rows = [_row(job, queues, dedup) for job in jobs]
    keys = _keys(conn.keys, queues, jobs)
    args = [
        conn.offset,
        len(queues),
        *queues,
        msgspec.json.encode(rows),
        *(encode_data(job) for job in jobs),
    ]
    if not dedup:
        created = await conn.run("enqueue", keys, args)
        return [(job.id, bool(c)) for job, c in zip(jobs, created, strict=True)]
    debounced = {job.dedup_key for job in jobs if job.dedup_key is not None and job.debounce}
    for _ in range(DEDUP_TRIES):
        more, entries = _dedup_keys(conn.keys, dedup, await _peek(conn, debounced), len(keys))
        added = await conn.run("enqueue", keys + more, [*args, msgspec.json.encode(entries)])
        if added != Code.PEEK_CHANGED:
            return [
                (c.decode(), False) if isinstance(c, bytes) else (job.id, bool(c))
                for job, c in zip(jobs, added, strict=True)
            ]
    raise BackendError(f"dedup keys changed under {DEDUP_TRIES} enqueues in a row")


def _row(job: NewJob, queues: dict[str, int], dedup: dict[str, int]) -> list[Any]:
    """A job's entry in enqueue-3.lua's JSON array, numbering its queue and
    dedup key in ``queues`` and ``dedup`` at first sight."""
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
        row += [dedup.setdefault(job.dedup_key, len(dedup)), job.dedup_ttl_ms, int(job.debounce)]
    return row


def _keys(k: Keys, queues: Iterable[str], jobs: Sequence[NewJob]) -> list[str]:
    """enqueue-3.lua's KEYS but for those of the dedup keys."""
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
    return keys + [k.job(job.id) for job in jobs]


async def _peek(conn: RedisConnection, keys: Iterable[str]) -> dict[str, tuple[str, str] | None]:
    """The job (id, queue) each dedup key names now, read without a script."""
    client = await conn.connected()
    names = list(keys)
    async with mapped_errors():
        found = await asyncio.gather(
            *(client.hmget(conn.keys.dedup(key), "job", "queue") for key in names)
        )
    return {
        key: None if job_id is None else (job_id.decode(), queue.decode())
        for key, (job_id, queue) in zip(names, found, strict=True)
    }


def _dedup_keys(
    k: Keys, dedup: dict[str, int], peeked: dict[str, tuple[str, str] | None], first: int
) -> tuple[list[str], list[list[Any]]]:
    """KEYS after the first ``first`` and the entries of enqueue-3.lua's last ARGV."""
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
