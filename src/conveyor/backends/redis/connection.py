"""The Redis store's connection: the state every operation module takes as
its first argument. URLs, clients, loading and calling the Lua scripts (with
NOSCRIPT reloads and driver errors mapped to Conveyor's), blocking on lists,
the server's clock, reading a job's queue and task, and what this process
remembers of the jobs it claimed and the waits it ran. ``backend.py``'s
docstring describes the store as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from conveyor.backends.redis import loops, peek, renewal, wire
from conveyor.backends.redis.batch import Batch, map_error
from conveyor.backends.redis.direct import DirectCalls
from conveyor.backends.redis.keys import Keys
from conveyor.backends.redis.record import identity_of
from conveyor.backends.redis.scripts import EMITS, Code, Scripts
from conveyor.clock import Clock
from conveyor.errors import BackendError, BackendUnavailable, ConfigurationError
from conveyor.events import EventSettings
from conveyor.urls import shown

log = logging.getLogger("conveyor.redis")

NOSCRIPT_TRIES = 5
RETRIES = 2  # quick retries of a command whose connection broke
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 2.0  # a connect (TLS handshake included) that takes longer fails
CLUSTER_IN_FLIGHT = 64  # script calls out at once on a Cluster (see run)
COMPLETE_ARGS = 5  # arguments per job of the complete script, which takes many jobs
BLOCK_MAX_S = 1.0  # idle: one BLPOP and one peek per second


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
        raise ConfigurationError(f"expected redis://, rediss:// or unix://, got {shown(url)!r}")
    try:
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise ConfigurationError(f"bad port in {shown(url)!r}: {exc}") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    namespace = query.pop("namespace", ["conveyor"])[0]
    if not namespace or any(c in namespace for c in "{}\0"):
        raise ConfigurationError(f"namespace must be non-empty without braces: {shown(url)!r}")
    cluster = query.pop("cluster", ["false"])[0].lower() in ("1", "true", "yes")
    rest = urlencode({k: v[0] for k, v in query.items()})
    return urlunsplit(parts._replace(query=rest)), namespace, cluster


class RedisConnection:
    """One backend's clients, keys and scripts, and its memory of the jobs it
    claimed and the waits it ran.

    ``follow_loop`` is the backend's ``Backend._follow_loop``: the gates here
    (connecting, closing, the client, script calls) call it, and the
    backend's ``_leave_loop`` calls ``leave_loop``. ``warnings`` is the
    backend's list, which the first connect fills.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        follow_loop: Callable[[], None],
        warnings: list[str],
        events: EventSettings,
    ) -> None:
        self.url = url
        self.clock = clock
        self.warnings = warnings
        self._follow_loop = follow_loop
        self._redis_url, namespace, self._cluster = parse_url(url)
        self.keys = Keys(namespace)
        # What every script that writes events gets last (lib.lua's emit): the
        # statistics' time to live (s: an hour's hash holds its last minute
        # for the whole age; '' for none), then the stream's bound ('' for none).
        self.tail_args = (
            str(math.ceil(events.stats_max_age_s) + 3600) if events.stats else "",
            str(events.max_count) if events.enabled else "",
        )
        self.events = events
        self._client: aioredis.Redis | None = None
        self._blocking: aioredis.Redis | None = None
        self._scripts: Scripts | None = None
        self._batch: Batch | None = None
        self._direct: DirectCalls | None = None  # lone calls, on a single node
        self.owned: dict[str, tuple[str, str]] = {}  # job id -> (queue, task), claimed here
        self.lean: set[str] = set()  # of those, jobs in no group and no flow
        self.lease_queues: dict[str, str] = {}  # job id -> queue, of the last expired_leases
        # Per set of queues (workers of one app share this backend): when a
        # limit the last claim met frees.
        self.retry_at: dict[tuple[str, ...], int | None] = {}
        # Per queue: a job an enqueue made ready and named in the wake it sent.
        self.hints: dict[str, str] = {}
        # Idle waits whose registration (peek.Registration) may stand: one an
        # enqueue handed a job to (in its other queues' sets) or one that
        # failed; the next claim or wait ends them and runs what they hold.
        self.left: list[tuple[str, peek.Registration]] = []
        # Registrations left lately, until they would have lapsed (monotonic
        # s): a restarted server may bring them back (``outage``).
        self.recent: list[tuple[float, str, peek.Registration]] = []
        # redis-py's cluster client fails a call past 100 connections per node
        # instead of waiting for one: keep script calls well below that.
        self._in_flight = asyncio.Semaphore(CLUSTER_IN_FLIGHT)
        self._background: set[asyncio.Task[None]] = set()  # held until they end
        self._checked = False  # the server's config, once per backend (_check_config)
        self.renewer = renewal.BlockingRenewer(
            self._redis_url, cluster=self._cluster, keys=self.keys
        )

    # -- lifecycle -------------------------------------------------------------

    async def connect(self) -> None:
        self._follow_loop()
        if self._client is not None:
            return
        client = self._from_url(socket_timeout=SOCKET_TIMEOUT_S)
        try:
            async with mapped_errors():
                await client.ping()
        except BaseException:  # a store that does not answer: leave no pool open
            await client.aclose()
            raise
        self._open(client)
        if not self._cluster:  # redis-py's cluster pipelines cannot carry scripts
            async with mapped_errors():
                await self.scripts.load(client)
        if not self._checked:
            self._checked = True
            await self._check_config()

    def _open(self, client: aioredis.Redis) -> None:
        """Use ``client`` (made on the running loop) and make the rest that
        belongs to this loop; no I/O: each connection opens at first use."""
        self._client = client
        # Blocking waits get connections of their own, with a socket timeout
        # above the longest block, so a half-open connection cannot hang them.
        self._blocking = self._from_url(socket_timeout=BLOCK_MAX_S + 5.0)
        self._scripts = Scripts(client)
        if not self._cluster:
            complete = self._scripts["complete"]
            self._batch = Batch(
                client,
                self._call,
                merged={complete.sha: COMPLETE_ARGS},
                tailed={self.scripts[name].sha for name in EMITS},
            )
            self._direct = DirectCalls(client)

    def leave_loop(self, old: asyncio.AbstractEventLoop) -> None:
        """The backend's ``_leave_loop``."""
        # The asyncio clients, and all made with them, are ``old``'s: drop them
        # (see loops.py) and, if connected, open anew here at once (the server
        # keeps the scripts, and the config was checked). The blocking renewal
        # client belongs to no loop and stays.
        client, blocking = self._client, self._blocking
        self._client = self._blocking = self._scripts = self._batch = self._direct = None
        self._in_flight = asyncio.Semaphore(CLUSTER_IN_FLIGHT)
        self._background = set()  # ``old``'s tasks: they cannot run again here
        for dropped in (client, blocking):
            if dropped is not None:
                loops.drop(dropped, old)
        if client is not None:
            self._open(self._from_url(socket_timeout=SOCKET_TIMEOUT_S))

    def _from_url(self, **kwargs: Any) -> Any:
        kind: Any = RedisCluster if self._cluster else aioredis.Redis
        # Pooled connections die with a restarted server; a couple of quick
        # retries hide that. Safe: every write is fenced by a token or
        # idempotent by job id, so a repeat changes nothing twice.
        client = kind.from_url(
            self._redis_url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            **kwargs,
        )
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
            log.warning("%s (%s)", warning, shown(self.url))

    async def close(self) -> None:
        """Close the clients; the backend then lets go of the loop."""
        self._follow_loop()  # on another loop: the old one's are dropped first
        client, blocking = self._client, self._blocking
        self._client = self._blocking = None
        self._batch = self._direct = None
        for c in (client, blocking):
            if c is not None:
                await c.aclose()
        self.renewer.close()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` in the background, held until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- commands ----------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        """The client of the running loop: every direct command takes it here."""
        self._follow_loop()
        if self._client is None:
            raise BackendError("redis backend is not connected")
        return self._client

    async def connected(self) -> aioredis.Redis:
        """The client, connecting first if the backend is not connected."""
        if self._client is None:
            await self.connect()
        return self.client

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            raise BackendError("redis backend is not connected")
        return self._scripts

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script: every script call passes here (then through ``_batch``)."""
        self._follow_loop()
        if self._client is None:
            await self.connect()
        script = self.scripts[name]
        if name in EMITS:  # the hour by this host's clock: readers look an hour either side
            hour = self.clock.now_ms() // 3_600_000
            keys = [*keys, self.keys.stats(hour), self.keys.totals, self.keys.events]
            args = [*args, *self.tail_args]
        try:
            if self._batch is not None:
                return await self._batch.run(script, keys, args)
            async with self._in_flight:  # Cluster: no pipelines of scripts, one connection each
                return await self._call(script, keys, args)
        except BackendUnavailable:
            self.outage()
            raise

    def outage(self) -> None:
        """The store did not answer. If it went down, it may come back without
        its last second of writes (AOF everysec), among them the leave of an
        idle wait's registration: an enqueue could then hand a job to a wait
        that is over, and the job would sit until its lease ran out. So the
        registrations left lately are left again by the next claim or wait."""
        now = time.monotonic()
        self.left += [(wake, reg) for until, wake, reg in self.recent if until > now]
        self.recent = []

    async def _call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script call on its own, reloading the script if the server lost it:
        on the held connection when it is free (``direct.py``), else the client's."""
        direct = self._direct
        if direct is not None and not direct.busy:
            try:  # not mapped_errors(): an async context manager costs ~5 us a call
                return await direct.call(script, keys, args)
            except (redis_errors.RedisError, OSError) as exc:
                raise map_error(exc) from exc
        async with mapped_errors():
            for attempt in range(NOSCRIPT_TRIES):
                try:
                    return await script(keys=keys, args=args)
                except redis_errors.NoScriptError:
                    # redis-py reloads once; the cache may be flushed again meanwhile
                    # (restarts, failovers, SCRIPT FLUSH in a loop).
                    if attempt == NOSCRIPT_TRIES - 1:
                        raise

    async def fenced(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> bool:
        """Run a script that answers ``Code.DONE`` or ``Code.STALE``."""
        return int(await self.run(name, keys, args)) == Code.DONE

    async def block(self, keys: Sequence[str], timeout: float) -> tuple[bytes, bytes] | None:
        """``BLPOP`` on the blocking client: the list and element popped, or
        None at the timeout."""
        assert self._blocking is not None
        async with mapped_errors():
            popped: tuple[bytes, bytes] | None = await self._blocking.blpop(keys, timeout=timeout)
            return popped

    async def block_on_stream(self, key: str, after: str, timeout: float) -> None:
        """``XREAD BLOCK`` on the blocking client: returns once ``key`` has an
        entry after ``after``, or at the timeout."""
        self._follow_loop()
        if self._blocking is None:
            await self.connect()
        assert self._blocking is not None
        async with mapped_errors():
            await self._blocking.xread({key: after}, count=1, block=max(1, int(timeout * 1000)))

    # -- time and jobs -------------------------------------------------------------

    @property
    def offset(self) -> int:
        """The clock's test offset (ms), every script's first argument."""
        return self.clock.offset_ms

    async def now(self) -> int:
        """The time on the server holding the namespace, plus the test offset, in ms."""
        keys, args = peek.peek_call(self.keys, [], self.offset)
        now, _ = peek.parse_peek(await self.run("peek", keys, args))
        return now

    async def identity(self, job_id: str) -> tuple[str, str] | None:
        """A job's queue and task (immutable), from memory or the store."""
        known = self.owned.get(job_id)
        if known is not None:
            return known
        client = await self.connected()
        async with mapped_errors():
            data = await client.hget(self.keys.job(job_id), "data")
        return None if data is None else identity_of(data)

    async def identities(self, job_ids: Sequence[str]) -> list[tuple[str, str] | None]:
        """Each job's (queue, task), or None for a job that is gone; ``("", "")``
        for one whose record cannot be read."""
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.keys.job(job_id), "data")
            found = await pipe.execute()
        identities: list[tuple[str, str] | None] = []
        for data in found:
            try:
                identities.append(identity_of(data) if data else None)
            except Exception:
                identities.append(("", ""))
        return identities

    async def queue_names(self) -> list[str]:
        client = await self.connected()
        async with mapped_errors():
            return sorted(q.decode() for q in await client.hkeys(self.keys.queues))

    def queue_of(self, job_id: str) -> str | None:
        """The queue of a job claimed here; None if not known here."""
        known = self.owned.get(job_id)
        return None if known is None else known[0]

    def forget(self, job_id: str) -> None:
        """A job claimed here is done with (or given back)."""
        self.owned.pop(job_id, None)
        self.lean.discard(job_id)
