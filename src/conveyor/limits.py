"""Flow control: rate limits and concurrency caps for queues and groups.

A limit belongs to a scope: a queue as a whole, every group of a queue (the
default each group gets), or one group of a queue (its own limits, field by
field over the default). Limits live in the store, so they hold across all
workers on all machines, and are changed at run time (``app.set_limits``,
``conveyor limit``).

- ``max_active``: at most this many jobs of the scope run at once.
- ``rate``: at most ``max`` jobs of the scope start in any span of ``per``
  (a sliding window on the store's clock, so ``50/s`` never lets 51 start
  within one second, not even across the edge of a fixed window). A claim
  that meets a full window leaves the job waiting: no attempt is spent, and
  idle workers sleep until the window frees a slot instead of polling.
  The store logs a start at its claim, and the job begins a few ms later,
  more or less after a busy moment; so the window the store keeps is a
  little longer than ``per`` (by 2.5 %, at most 25 ms), enough that the
  limit also holds for the moments the jobs themselves start. A ``50/s``
  limit so runs at about 48.8 jobs/s at most.

Groups (tenants): a job may carry a ``group``. In a queue with groups, the
groups with waiting jobs take turns: every claim serves them round-robin, one
job each per round, and the queue's jobs without a group share one turn of
their own. A group that gets waiting jobs after having none joins the
rotation at the back. Priority and FIFO order jobs within a group, not
across groups. So a group with 100,000 waiting jobs cannot starve one with
10: the k-th job of a group B waiting behind ``G - 1`` other groups starts
after at most ``k * (G - 1)`` of their jobs, plus the jobs of claims already
under way (at most twice each worker's concurrency: a worker claims again
while outcomes are written). A group at one of its limits gives its turn to
the next.

Changing a limit applies from the next claim; a rate's window remembers only
the starts its old window needed, so right after a window is lengthened a
few more jobs may start than the new window allows.
"""

from __future__ import annotations

import math
import re

import msgspec

from conveyor import validate
from conveyor.errors import InvalidInput

__all__ = ["EVERY_GROUP", "Limits", "Rate", "with_holds"]

EVERY_GROUP = "*"  # the group scope that sets every group's default limits

_UNITS_S = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86_400}
_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*(?:\.[0-9]+)?)\s*([a-z]+)\s*")
MAX_RATE_JOBS = 1_000_000
GUARD_MS = 25  # the longest margin added to a rate window (see above)


class Rate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``max`` job starts per ``per_ms`` milliseconds."""

    max: int
    per_ms: int

    def __post_init__(self) -> None:
        validate.count("rate", self.max, minimum=1)
        if self.max > MAX_RATE_JOBS:
            raise InvalidInput("rate", f"must allow at most {MAX_RATE_JOBS} jobs per window")
        validate.count("rate", self.per_ms, minimum=1)
        validate.seconds("rate", self.per_ms / 1000)

    @classmethod
    def parse(cls, value: object, field: str = "rate") -> Rate:
        """``"100/m"``, ``"50/s"``, ``"10/5s"``, ``"1000/15min"`` or a ``Rate``."""
        if isinstance(value, Rate):
            return value
        if not isinstance(value, str):
            raise InvalidInput(field, "must look like '100/m' (jobs per s, m, h or d)")
        match = _RATE.fullmatch(value.lower())
        if match is None or match[3] not in _UNITS_S:
            raise InvalidInput(
                field, f"must look like '100/m' (jobs per s, m, h or d), got {value!r}"
            )
        count = float(match[2]) if match[2] else 1.0
        per_ms = count * _UNITS_S[match[3]] * 1000
        if not math.isfinite(per_ms) or per_ms < 1 or per_ms != int(per_ms):
            raise InvalidInput(field, f"window must be a whole number of ms, got {value!r}")
        try:
            return cls(int(match[1]), int(per_ms))
        except InvalidInput as exc:
            raise InvalidInput(field, exc.message) from None

    @property
    def window_ms(self) -> int:
        """The span the store keeps starts apart by: ``per_ms`` and a margin."""
        return window_ms(self.per_ms)

    def __str__(self) -> str:
        for unit in ("d", "h", "m", "s"):
            span = _UNITS_S[unit] * 1000
            if self.per_ms % span == 0:
                count = self.per_ms // span
                return f"{self.max}/{'' if count == 1 else count}{unit}"
        return f"{self.max}/{self.per_ms}ms"


def window_ms(per_ms: int) -> int:
    """A rate window with the margin for claim-to-start delays (see above)."""
    return per_ms + min(GUARD_MS, per_ms // 40)


class Limits(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The limits of one scope; ``None`` means none. As ``app.limits`` reads
    them, ``held_ms`` also says how long until the scope may start a job
    again, when its rate window is full or a job of it raised
    ``RateLimited`` (BullMQ's ``getRateLimitTtl``); None: it may now (as far
    as its rate goes: ``max_active`` may still keep it full)."""

    max_active: int | None = None
    rate: Rate | None = None
    held_ms: int | None = None

    @property
    def empty(self) -> bool:
        return self.max_active is None and self.rate is None

    def __str__(self) -> str:
        """``max 3 active, 100/m``, or ``no limits``; ``held 1.5 s`` if held."""
        words = [f"max {self.max_active} active"] if self.max_active is not None else []
        words += [str(self.rate)] if self.rate is not None else []
        words += [f"held {self.held_ms / 1000:.1f} s"] if self.held_ms is not None else []
        return ", ".join(words) or "no limits"


def with_holds(
    limits: dict[str | None, Limits], held: dict[str | None, int]
) -> dict[str | None, Limits]:
    """The limits of each scope with how long each held one is held (``held``:
    ms by scope); a scope held without limits of its own (a group under the
    groups' default rate, or held by ``RateLimited``) joins them."""
    found = dict(limits)
    for scope, ms in held.items():
        if ms > 0:
            found[scope] = msgspec.structs.replace(found.get(scope, Limits()), held_ms=ms)
    order = sorted(found, key=lambda s: (s is not None, s != EVERY_GROUP, s or ""))
    return {scope: found[scope] for scope in order}


def group_name(value: object) -> str:
    """A job's group: a name, not ``EVERY_GROUP``."""
    name = validate.name("group", value)
    if name == EVERY_GROUP:
        raise InvalidInput("group", f"{EVERY_GROUP!r} is reserved (every group's limits)")
    return name
