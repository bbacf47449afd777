"""Lease renewal from a thread of the worker's own, on a blocking client.

Job code may block the event loop or hog the CPU; renewals sent from the loop
would then stop and a live job's lease would lapse. The worker renews from a
thread instead, and that thread needs a connection no coroutine shares: this
module's synchronous redis-py client, which runs the same ``extend`` script.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis import exceptions as redis_errors
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from conveyor.backends.redis.batch import map_error
from conveyor.backends.redis.keys import Keys
from conveyor.backends.redis.record import identity_of
from conveyor.backends.redis.scripts import SOURCES

TIMEOUT_S = 5.0  # a renewal that takes longer is retried at the next turn
RETRIES = 2

Lease = tuple[str, str]  # (job id, token)


def extend_call(
    keys: Keys,
    leases: Sequence[Lease],
    queues: Sequence[str | None],
    offset_ms: int,
    lease_ms: int,
) -> tuple[list[str], list[Any], list[Lease]]:
    """The ``extend`` script's keys and arguments for ``leases`` (each job's
    queue, or None for a job that is gone), and the leases already lost."""
    script_keys: list[str] = []
    args: list[Any] = [offset_ms, lease_ms]
    lost: list[Lease] = []
    for (job_id, token), queue in zip(leases, queues, strict=True):
        if queue is None:
            lost.append((job_id, token))
            continue
        script_keys += [keys.job(job_id), keys.state(queue, "active")]
        args += [job_id, token]
    return script_keys, args, lost


def lost_leases(reply: Sequence[bytes]) -> list[Lease]:
    """The ``extend`` script's reply: a flat list of lost ids and tokens."""
    flat = [value.decode() for value in reply]
    return list(zip(flat[::2], flat[1::2], strict=True))


class BlockingRenewer:
    """Extends leases on a synchronous client, created at first use."""

    def __init__(self, url: str, *, cluster: bool, keys: Keys) -> None:
        self._url = url
        self._cluster = cluster
        self._keys = keys
        self._lock = threading.Lock()
        self._client: Any = None
        self._script: Callable[..., Any] | None = None

    def extend(
        self,
        leases: Sequence[Lease],
        queue_of: Callable[[str], str | None],
        offset_ms: int,
        lease_ms: int,
    ) -> list[Lease]:
        with self._lock:
            try:
                client, script = self._connected()
                queues = [queue_of(job_id) for job_id, _ in leases]
                for i, (job_id, _) in enumerate(leases):
                    if queues[i] is None:  # not claimed here: look it up
                        data = client.hget(self._keys.job(job_id), "data")
                        queues[i] = None if data is None else identity_of(data)[0]
                keys, args, lost = extend_call(self._keys, leases, queues, offset_ms, lease_ms)
                if keys:
                    lost += lost_leases(script(keys=keys, args=args))
                return lost
            except (redis_errors.RedisError, OSError) as exc:
                raise map_error(exc) from exc

    def _connected(self) -> tuple[Any, Callable[..., Any]]:
        if self._client is None or self._script is None:
            kind: Any = RedisCluster if self._cluster else redis.Redis
            self._client = kind.from_url(
                self._url,
                socket_timeout=TIMEOUT_S,
                socket_connect_timeout=TIMEOUT_S,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES),
                retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            )
            self._script = self._client.register_script(SOURCES["extend"])
        return self._client, self._script

    def close(self) -> None:
        with self._lock:
            client, self._client, self._script = self._client, None, None
        if client is not None:
            client.close()
