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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from conveyor.backends import retention as retention_
from conveyor.backends.base import (
    Backend,
    ClaimedJob,
    NewJob,
    ProgressUpdate,
    ReclaimResult,
    WorkerInfo,
)
from conveyor.backends.claiming import Member
from conveyor.backends.redis import claims, renewal, wire
from conveyor.backends.redis.batch import Batch, map_error
from conveyor.backends.redis.keys import FINISHED, Keys
from conveyor.backends.redis.record import (
    encode_data,
    identity_of,
    job_from_fields,
    retention_member,
)
from conveyor.backends.redis.scripts import Code, Scripts
from conveyor.clock import Clock
from conveyor.errors import BackendError, BackendUnavailable, ConfigurationError
from conveyor.job import JobState, Retention

log = logging.getLogger("conveyor.redis")

PROMOTE_BATCH = 1000
NOSCRIPT_TRIES = 5
BATCH = 1000  # jobs per round of bulk retries and cleaning
RETRIES = 2  # quick retries of a command whose connection broke
CLUSTER_IN_FLIGHT = 64  # script calls out at once on a Cluster (see _run)
COMPLETE_KEYS = 6  # keys per job of the complete script, which takes many jobs
BLOCK_MAX_S = 1.0  # idle: one BLPOP and one peek per second
DEDUP_TRIES = 50  # batches whose peeked dedup keys changed meanwhile


def _tracked(retention: Retention, queue: str, job_id: str) -> str:
    """The retention member to record, or '' when nothing will ever be trimmed."""
    return retention_member(queue, job_id) if retention.limited else ""


@contextlib.asynccontextmanager
async def mapped_errors() -> AsyncIterator[None]:
    """Driver errors become Conveyor's (``BackendUnavailable`` when unreachable)."""
    try:
        yield
    except (redis_errors.RedisError, OSError) as exc:
        raise map_error(exc) from exc


def parse_url(url: str) -> tuple[str, str, bool]:
    """The URL for redis-py, the key namespace, and whether it is a Cluster."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(f"expected redis://, rediss:// or unix://, got {url!r}")
    query = parse_qs(parts.query)
    namespace = query.pop("namespace", ["conveyor"])[0]
    if not namespace or any(c in namespace for c in "{}\0"):
        raise ConfigurationError(f"namespace must be non-empty without braces: {url!r}")
    cluster = query.pop("cluster", ["false"])[0].lower() in ("1", "true", "yes")
    rest = urlencode({k: v[0] for k, v in query.items()})
    return urlunsplit(parts._replace(query=rest)), namespace, cluster


class RedisTransitions(Backend):
    """Connection, scripts and every transition a worker or producer makes;
    ``RedisBackend`` adds reading and managing jobs."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self.url = url
        self._redis_url, namespace, self._cluster = parse_url(url)
        self.keys = Keys(namespace)
        self._client: aioredis.Redis | None = None
        self._blocking: aioredis.Redis | None = None
        self._scripts: Scripts | None = None
        self._batch: Batch | None = None
        self._owned: dict[str, tuple[str, str]] = {}  # job id -> (queue, task), claimed here
        self._lease_queues: dict[str, str] = {}  # job id -> queue, of the last expired_leases
        # Per set of queues (workers of one app share this backend): when a
        # limit the last claim met frees.
        self._retry_at: dict[tuple[str, ...], int | None] = {}
        # redis-py's cluster client fails a call past 100 connections per node
        # instead of waiting for one: keep script calls well below that.
        self._in_flight = asyncio.Semaphore(CLUSTER_IN_FLIGHT)
        self._trims = retention_.TrimSchedule()
        self._renewer = renewal.BlockingRenewer(
            self._redis_url, cluster=self._cluster, keys=self.keys
        )

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        if self._client is not None:
            return
        kind: Any = RedisCluster if self._cluster else aioredis.Redis
        # Pooled connections die with a restarted server; a couple of quick
        # retries hide that. Safe: every write is fenced by a token or
        # idempotent by job id, so a repeat changes nothing twice.
        retry: dict[str, Any] = dict(
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
        )
        client = self._from_url(kind, socket_timeout=10.0, **retry)
        async with mapped_errors():
            await client.ping()
        self._client = client
        # Blocking waits get connections of their own, with a socket timeout
        # above the longest block, so a half-open connection cannot hang them.
        self._blocking = self._from_url(kind, socket_timeout=BLOCK_MAX_S + 5.0, **retry)
        self._scripts = Scripts(client)
        if not self._cluster:  # redis-py's cluster pipelines cannot carry scripts
            async with mapped_errors():
                await self._scripts.load(client)
            complete = self._scripts["complete"]
            self._batch = Batch(client, self._call, merged={complete.sha: COMPLETE_KEYS})
        await self._check_config()

    def _from_url(self, kind: Any, **kwargs: Any) -> Any:
        client = kind.from_url(self._redis_url, **kwargs)
        if not self._cluster:
            # redis-py's from_url lets the URL's scheme choose the connection
            # class (SSLConnection for rediss://, UnixDomainSocketConnection for
            # unix://) over a connection_class keyword: set ours on the still
            # empty pool, so every scheme gets the faster wire.
            scheme = self._redis_url.split(":", 1)[0]
            client.connection_pool.connection_class = wire.connection_class(scheme)
        return client

    async def _check_config(self) -> None:
        """Warn once when Redis may drop acknowledged jobs (eviction, no persistence)."""
        try:
            policy = (await self.client.config_get("maxmemory-policy")).get("maxmemory-policy")
            persistence = await self.client.config_get("appendonly")
            saves = await self.client.config_get("save")
        except redis_errors.RedisError:  # CONFIG may be disabled (managed Redis)
            return
        if policy not in (b"noeviction", "noeviction"):
            self.warnings.append(f"maxmemory-policy is {policy!r}: Redis may evict jobs")
        aof = persistence.get("appendonly") in (b"yes", "yes")
        if not aof and not saves.get("save"):
            self.warnings.append("persistence is off: a Redis restart loses every job")
        for warning in self.warnings:
            log.warning("%s (%s)", warning, self.url)

    async def close(self) -> None:
        client, blocking = self._client, self._blocking
        self._client = self._blocking = None
        self._batch = None
        for c in (client, blocking):
            if c is not None:
                await c.aclose()
        self._renewer.close()

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendError("redis backend is not connected")
        return self._client

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            raise BackendError("redis backend is not connected")
        return self._scripts

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._client is None:
            await self.connect()
        script = self.scripts[name]
        if self._batch is not None:
            return await self._batch.run(script, keys, args)
        async with self._in_flight:  # Cluster: no pipelines of scripts, one connection each
            return await self._call(script, keys, args)

    async def _call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call on its own, reloading the script if the server lost it."""
        async with mapped_errors():
            for attempt in range(NOSCRIPT_TRIES):
                try:
                    return await script(keys=keys, args=args)
                except redis_errors.NoScriptError:
                    # redis-py reloads once; the cache may be flushed again meanwhile
                    # (restarts, failovers, SCRIPT FLUSH in a loop).
                    if attempt == NOSCRIPT_TRIES - 1:
                        raise

    async def _fenced(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> bool:
        """Run a script that answers ``Code.DONE`` or ``Code.STALE``."""
        return int(await self._run(name, keys, args)) == Code.DONE

    @property
    def _offset(self) -> int:
        return self.clock.offset_ms

    async def _now(self) -> int:
        """The time on the server holding the namespace, plus the test offset, in ms."""
        now, _ = await self._peek([], 0)
        return now

    async def _identity(self, job_id: str) -> tuple[str, str] | None:
        """A job's queue and task (immutable), from memory or the store."""
        known = self._owned.get(job_id)
        if known is not None:
            return known
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            data = await self.client.hget(self.keys.job(job_id), "data")
        return None if data is None else identity_of(data)

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
            row: list[Any] = [job.id, queues.setdefault(job.queue, len(queues)), job.priority,
                              int(job.lifo), job.delay_ms, job.run_at_ms, job.ttl_ms, job.group,
                              None if parent is None else parent.id, job.on_failure,
                              job.children, job.task]  # fmt: skip
            if job.dedup_key is not None:
                row += [dedup.setdefault(job.dedup_key, len(dedup)), job.dedup_ttl_ms,
                        int(job.debounce)]  # fmt: skip
                if job.debounce:
                    debounced.add(job.dedup_key)
            rows.append(row)
        keys = [k.seq, k.queues]
        for queue in queues:
            keys += [k.state(queue, "waiting"), k.state(queue, "delayed"), k.marker(queue),
                     k.queue(queue, "gwaiting"), k.queue(queue, "groups"),
                     k.state(queue, "waiting_children")]  # fmt: skip
        keys += [k.job(job.id) for job in jobs]
        args = [self._offset, len(queues), *queues, msgspec.json.encode(rows),
                *(encode_data(job) for job in jobs)]  # fmt: skip
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
            if added != -1:
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
        """KEYS after the first ``first`` and the entries of enqueue-2.lua's last ARGV."""
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
                    more += [k.job(job_id), k.logs(job_id), k.state(queue, "waiting"),
                             k.state(queue, "delayed"), k.queue(queue, "gwaiting"),
                             k.queue(queue, "groups")]  # fmt: skip
            entries.append(entry)
        return more, entries

    # -- workers ---------------------------------------------------------------

    async def claim(
        self, *, queues: Sequence[str], limit: int, worker_id: str, lease_ms: int
    ) -> list[ClaimedJob]:
        if limit <= 0 or not queues:
            return []
        if self._client is None:
            await self.connect()
        for _ in range(2):  # a second look after promoting due delayed jobs
            now, looks = await self._peek(queues, limit)
            due = [q for q, look in zip(queues, looks, strict=True) if 0 <= look.due <= now]
            if not due or not await self._promote_due(due):
                break
        planned = claims.allotments(queues, looks)
        group_jobs = await self._group_jobs(planned) if planned else {}
        chosen = claims.candidates(queues, looks, planned, group_jobs, limit)
        self._retry_at[tuple(queues)] = claims.retry_at(looks)
        if not chosen:
            return []
        keys, args = claims.claim_call(self.keys, chosen, self._offset, lease_ms, worker_id)
        taken, expired = await self._run("claim", keys, args)
        for job_id in expired:
            await self._cancel(job_id.decode(), reason="expired", expired_only=True)
        claimed = []
        for token, expires, values in taken:
            job, arguments = job_from_fields(values)
            self._owned[job.id] = (job.queue, job.task)
            claimed.append(
                ClaimedJob(
                    job=job,
                    token=token.decode(),
                    lease_expires_ms=int(expires),
                    payload=arguments,
                )
            )
        return claimed

    async def _peek(self, queues: Sequence[str], room: int) -> tuple[int, list[claims.Look]]:
        """Server time, and how each queue looks (see ``claims.Look``)."""
        keys, args = claims.peek_call(self.keys, queues, self._offset, room)
        return claims.parse_peek(await self._run("peek", keys, args))

    async def _group_jobs(
        self, planned: Sequence[tuple[str, Sequence[Member], Sequence[int]]]
    ) -> dict[tuple[str, str], list[claims.Candidate]]:
        """The first waiting jobs of each group that a claim allotted jobs to."""
        wanted = [(queue, member.group, count) for queue, members, counts in planned
                  for member, count in zip(members, counts, strict=True)
                  if count and member.group is not None]  # fmt: skip
        if not wanted:
            return {}
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for queue, group, count in wanted:
                pipe.zrangebylex(self.keys.queue(queue, "gwaiting"), f"[{group}\0",
                                 f"({group}\1", 0, count)  # fmt: skip
            replies = await pipe.execute()
        return {
            (queue, group): claims.group_candidates(members, queue)
            for (queue, group, _), members in zip(wanted, replies, strict=True)
        }

    async def _cancel(self, job_id: str, *, reason: str, expired_only: bool = False) -> bool:
        """Cancel an unfinished job, with ``reason`` as its error (with
        ``expired_only``: only a waiting job past its TTL deadline)."""
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue, task = identity
        k = self.keys
        keys = [k.job(job_id), k.state(queue, "waiting"), k.state(queue, "delayed"),
                k.state(queue, "active"), k.state(queue, "cancelled"),
                k.done(task, "cancelled"), k.queue(queue, "gwaiting"), k.queue(queue, "groups"),
                k.queue(queue, "gactive"), k.state(queue, "waiting_children"),
                k.outbox]  # fmt: skip
        args = [self._offset, retention_member(queue, job_id), job_id, reason,
                "1" if expired_only else ""]  # fmt: skip
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
                keys = [k.state(queue, "delayed"), k.state(queue, "waiting"), k.marker(queue),
                        k.queue(queue, "gwaiting"), k.queue(queue, "groups")]  # fmt: skip
                result = await self._run(
                    "promote", keys + [k.job(i) for i in ids], [self._offset, 0, *ids]
                )
                moved += int(result[0])
        return moved

    async def wait_for_jobs(self, *, queues: Sequence[str], timeout_s: float) -> None:
        now, looks = await self._peek(queues, 0)
        # The next delayed job, a hold or full rate window of a queue, or a
        # group held back at the last claim: the soonest of them wakes us.
        times = [look.due for look in looks if look.due >= 0]
        times += [look.held for look in looks if look.held >= 0]
        retry_at = self._retry_at.get(tuple(queues))
        if retry_at is not None and retry_at > now:
            times.append(retry_at)
        wait = min(timeout_s, BLOCK_MAX_S)
        if times:
            wait = min(wait, max(0.0, (min(times) - now) / 1000))
        if wait <= 0:
            return
        assert self._blocking is not None
        async with mapped_errors():
            await self._blocking.blpop(
                [self.keys.marker(q) for q in queues], timeout=max(wait, 0.01)
            )

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
        keys = [k.job(job_id), k.state(queue, "active"), k.state(queue, "completed"),
                k.done(task, "completed"), k.queue(queue, "gactive"), k.outbox]  # fmt: skip
        args = [self._offset, token, result, _tracked(retention, queue, job_id), job_id]
        (code,) = await self._run("complete", keys, args)
        if int(code) != Code.DONE:
            return False
        self._owned.pop(job_id, None)
        await self._trim(task, JobState.COMPLETED, retention)
        return True

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
        keys = [k.job(job_id), k.state(queue, "active"), k.state(queue, "delayed"),
                k.state(queue, "failed"), k.done(task, "failed"),
                k.queue(queue, "gactive"), k.outbox]  # fmt: skip
        retry = "" if retry_in_ms is None else retry_in_ms
        args = [self._offset, token, error, traceback or "", retry,
                _tracked(retention, queue, job_id), job_id]  # fmt: skip
        if not await self._fenced("fail", keys, args):
            return False
        self._owned.pop(job_id, None)
        if retry_in_ms is None:
            await self._trim(task, JobState.FAILED, retention)
        return True

    async def release(
        self, *, job_id: str, token: str, block_ms: int | None = None, block_group: bool = False
    ) -> bool:
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue = identity[0]
        k = self.keys
        keys = [k.job(job_id), k.state(queue, "active"), k.state(queue, "waiting"),
                k.marker(queue), k.queue(queue, "gwaiting"), k.queue(queue, "groups"),
                k.queue(queue, "gactive"), k.holds]  # fmt: skip
        args = [self._offset, token, job_id, "" if block_ms is None else block_ms,
                int(block_group), queue]  # fmt: skip
        released = await self._fenced("release", keys, args)
        self._owned.pop(job_id, None)
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
                    applied += code > 0
                    if code != 2:
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

    async def _settle(self, child_id: str, parent_id: str) -> int:
        queue, task = await self._identity(parent_id) or ("", "")  # gone: the entry is dropped
        k = self.keys
        keys = [k.outbox, k.outcomes(parent_id), k.job(parent_id), k.state(queue, "waiting"),
                k.queue(queue, "gwaiting"), k.queue(queue, "groups"), k.marker(queue),
                k.state(queue, "waiting_children"), k.state(queue, "failed"),
                k.done(task, "failed")]  # fmt: skip
        args = [self._offset, child_id, parent_id, retention_member(queue, parent_id)]
        return int(await self._run("settle", keys, args))

    async def report_progress(self, *, job_id: str, token: str, update: ProgressUpdate) -> bool:
        keys = [self.keys.job(job_id), self.keys.logs(job_id)]
        args = [self._offset, token, "" if update.progress is None else update.progress,
                "" if update.detail is None else msgspec.json.encode(update.detail),
                *update.logs]  # fmt: skip
        return await self._fenced("progress", keys, args)

    async def expired_leases(self, *, limit: int) -> list[tuple[str, int]]:
        """Oldest first within each queue."""
        now = await self._now()
        found: list[tuple[str, int]] = []
        for queue in await self._queue_names():
            async with mapped_errors():
                leases = await self.client.zrange(
                    self.keys.state(queue, "active"), 0, f"({now}", byscore=True,
                    offset=0, num=limit - len(found), withscores=True,
                )  # fmt: skip
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
            if identity is not None:
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
            keys = [k.state(queue, "active"), k.state(queue, "waiting"),
                    k.state(queue, "failed"), k.marker(queue), k.queue(queue, "gwaiting"),
                    k.queue(queue, "groups"), k.queue(queue, "gactive"), k.outbox]  # fmt: skip
            args: list[Any] = [self._offset, max_stalls]
            for job_id, task, expiry in jobs:
                keys += [k.job(job_id), k.done(task, "failed"), k.logs(job_id)]
                args += [job_id, retention_member(queue, job_id), expiry]
            back, dead = await self._run("reclaim", keys, args)
            requeued += [i.decode() for i in back]
            failed += [i.decode() for i in dead]
        return ReclaimResult(requeued=requeued, failed=failed)

    async def _identities(self, job_ids: Sequence[str]) -> list[tuple[str, str] | None]:
        """Each job's (queue, task), or None for a job that is gone."""
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.keys.job(job_id), "data")
            return [identity_of(d) if d else None for d in await pipe.execute()]

    async def _queue_names(self) -> list[str]:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            return sorted(q.decode() for q in await self.client.hkeys(self.keys.queues))

    async def _trim(self, task: str, state: JobState, retention: Retention) -> None:
        """Remove finished jobs of ``task`` beyond ``retention`` (see retention.py)."""
        # The schedule only decides when to look, so the local clock will do;
        # what to delete is decided by the server's time below.
        if not self._trims.due(task, state.value, retention, self.clock.now_ms()):
            return
        now = await self._now()
        done = self.keys.done(task, state)
        victims: dict[str, int | None] = {}  # member -> latest finish time allowed
        async with mapped_errors():
            if retention.max_age_s is not None:
                cutoff = now - int(retention.max_age_s * 1000)
                for member, _ in await self.client.zrange(
                    done, 0, cutoff, byscore=True, offset=0, num=retention_.BATCH,
                    withscores=True,
                ):  # fmt: skip
                    victims[member.decode()] = cutoff
            if retention.max_count is not None:
                surplus = await self.client.zcard(done) - retention.max_count
                if surplus > 0:
                    for member in await self.client.zrange(
                        done, 0, min(surplus, retention_.BATCH) - 1
                    ):
                        victims.setdefault(member.decode(), None)
        removed = 0
        for member, latest in victims.items():
            queue, _, job_id = member.partition("\0")
            if await self._remove(job_id, queue, task, state=state.value, latest=latest):
                removed += 1
        self._trims.done(task, state.value, retention, self.clock.now_ms(), removed)

    async def _remove(
        self, job_id: str, queue: str, task: str, *, state: str = "", latest: int | None = None
    ) -> bool:
        k = self.keys
        keys = [k.job(job_id), k.logs(job_id), k.state(queue, "waiting"),
                k.state(queue, "delayed"), *(k.state(queue, s) for s in FINISHED),
                *(k.done(task, s) for s in FINISHED), k.queue(queue, "gwaiting"),
                k.queue(queue, "groups"), k.state(queue, "waiting_children"), k.outbox,
                k.outcomes(job_id)]  # fmt: skip
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
