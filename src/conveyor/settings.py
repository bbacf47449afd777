"""One typed settings object per worker; ``CONVEYOR_*`` variables overlay it.

``WorkerSettings.from_env(**overrides)`` reads ``CONVEYOR_QUEUES``,
``CONVEYOR_CONCURRENCY``, ``CONVEYOR_LEASE``, ``CONVEYOR_MAX_STALLS`` and
``CONVEYOR_SHUTDOWN_GRACE``; explicit arguments (e.g. CLI flags) win.
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
    concurrency: int = 10
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
        validate.count("max_stalls", self.max_stalls)
        validate.seconds("lease_s", self.lease_s, allow_zero=False)
        validate.seconds("reclaim_interval_s", self.reclaim_interval_s, allow_zero=False)
        validate.seconds("shutdown_grace_s", self.shutdown_grace_s)
        validate.seconds("heartbeat_s", self.heartbeat_s, allow_zero=False)

    @classmethod
    def from_env(cls, **overrides: Any) -> WorkerSettings:
        env: dict[str, Any] = {}
        for field, var, parse in (
            ("queues", "CONVEYOR_QUEUES", parse_queues),
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


def parse_queues(raw: str) -> tuple[str, ...]:
    return tuple(q.strip() for q in raw.split(",") if q.strip())
