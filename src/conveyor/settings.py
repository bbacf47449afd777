"""One typed settings object per worker; ``CONVEYOR_*`` variables overlay it.

``WorkerSettings.from_env(**overrides)`` reads ``CONVEYOR_QUEUES``,
``CONVEYOR_CONCURRENCY``, ``CONVEYOR_LEASE``, ``CONVEYOR_MAX_STALLS``,
``CONVEYOR_RECLAIM_INTERVAL`` and ``CONVEYOR_SHUTDOWN_GRACE``; explicit
arguments (e.g. CLI flags) win.

Concurrency per queue: a queue may have slots of its own
(``queue_concurrency``, or ``name:N`` in ``CONVEYOR_QUEUES`` and
``--queues``); a backlog in it never takes another queue's slots, and no
other queue takes its. The queues without a count share ``concurrency``
slots, competing by priority as one pool (as every queue did before counts
existed). The worker runs at most the sum at once.
"""

from __future__ import annotations

import os
from typing import Any

import msgspec

from conveyor import validate
from conveyor.errors import InvalidInput

__all__ = ["WorkerSettings"]

RENEW_EVERY_S = 2.0


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    queues: tuple[str, ...] = ("default",)
    concurrency: int = 10  # slots shared by the queues without a count of their own
    queue_concurrency: dict[str, int] = msgspec.field(default_factory=dict)  # queue -> own slots
    lease_s: float = 30.0  # a job's lease; renewed every renew_interval_s while it runs
    max_stalls: int = 1  # reclaims allowed before a job fails as "stalled"
    reclaim_interval_s: float = 5.0  # how often this worker looks for expired leases
    shutdown_grace_s: float = 25.0  # fits a 30 s container kill window
    heartbeat_s: float = 5.0

    @property
    def renew_interval_s(self) -> float:
        """How often running jobs' leases are renewed: every 2 s, or a third of a
        shorter lease. Also how soon a worker notices a running job was cancelled."""
        return min(RENEW_EVERY_S, self.lease_s / 3)

    def __post_init__(self) -> None:
        if isinstance(self.queues, str) or not isinstance(self.queues, tuple | list):
            raise InvalidInput("queues", "must be a sequence of queue names, not one string")
        if not self.queues:
            raise InvalidInput("queues", "name at least one queue")
        for queue in self.queues:
            validate.name("queues", queue)
        validate.count("concurrency", self.concurrency, minimum=1)
        if not isinstance(self.queue_concurrency, dict):
            raise InvalidInput("queue_concurrency", "must map queue names to slot counts")
        for queue, slots in self.queue_concurrency.items():
            if queue not in self.queues:
                raise InvalidInput("queue_concurrency", f"{queue!r} is not one of the queues")
            validate.count("queue_concurrency", slots, minimum=1)
        if len(set(self.queues)) != len(self.queues):
            raise InvalidInput("queues", "names a queue twice")
        validate.count("max_stalls", self.max_stalls)
        validate.seconds("lease_s", self.lease_s, allow_zero=False)
        validate.seconds("reclaim_interval_s", self.reclaim_interval_s, allow_zero=False)
        validate.seconds("shutdown_grace_s", self.shutdown_grace_s)
        validate.seconds("heartbeat_s", self.heartbeat_s, allow_zero=False)

    @property
    def pools(self) -> list[tuple[tuple[str, ...], int]]:
        """The worker's slots: ``(queues, slots)``, a queue with a count of
        its own alone, then the others together with ``concurrency``."""
        own = [
            ((q,), self.queue_concurrency[q]) for q in self.queues if q in self.queue_concurrency
        ]
        shared = tuple(q for q in self.queues if q not in self.queue_concurrency)
        return own + ([(shared, self.concurrency)] if shared else [])

    @property
    def slots(self) -> int:
        """Jobs the worker runs at once at most: every pool's slots."""
        return sum(slots for _, slots in self.pools)

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerSettings:
        """``CONVEYOR_QUEUES`` is ``name[:N],...`` (see ``parse_queues``); a
        ``queues`` override replaces it whole, counts included."""
        env: dict[str, Any] = {}
        raw_queues = os.environ.get("CONVEYOR_QUEUES")
        if raw_queues:
            env["queues"], env["queue_concurrency"] = parse_queues(raw_queues, "CONVEYOR_QUEUES")
        if overrides.get("queues") is not None:
            env.pop("queue_concurrency", None)
        for field, var, parse in (
            ("concurrency", "CONVEYOR_CONCURRENCY", int),
            ("lease_s", "CONVEYOR_LEASE", float),
            ("max_stalls", "CONVEYOR_MAX_STALLS", int),
            ("reclaim_interval_s", "CONVEYOR_RECLAIM_INTERVAL", float),
            ("shutdown_grace_s", "CONVEYOR_SHUTDOWN_GRACE", float),
        ):
            raw = os.environ.get(var)
            if raw:
                try:
                    env[field] = parse(raw)
                except ValueError:
                    raise InvalidInput(var, f"cannot parse {raw!r}") from None
        env.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**env)


def parse_queues(raw: str, field: str = "queues") -> tuple[tuple[str, ...], dict[str, int]]:
    """``"email:5,pdf:2,default"`` -> the queue names and the counts given.

    A count is what follows a name's last ``:`` when it is all digits; a
    queue whose own name ends so needs a count of its own (``a:5:1``)."""
    names: list[str] = []
    counts: dict[str, int] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, colon, count = item.rpartition(":")
        if colon and count.isascii() and count.isdigit():
            if int(count) < 1:
                raise InvalidInput(field, f"{item!r}: a queue's count must be at least 1")
            counts[name] = int(count)
        else:
            name = item
        names.append(name)
    return tuple(names), counts
