"""Job statistics: the outcomes a store counted, per minute, queue and task,
and per queue ever.

Each store counts an outcome in the same atomic step as the change that is
it (the same Lua script on Redis, the same transaction on SQLite), so the
counts are exact across every worker and survive any restart: they are what
the dashboard charts, alert rules and reports read.

========================  =====================================================
``completed``             runs that ended with a result
``failed``                jobs that failed for good (a last attempt, too many
                          stalls, or a flow's failed child)
``retried``               attempts that failed and were scheduled again
``stalled``               leases that expired unrenewed (the job went back to
                          waiting, or failed: then it counts as failed too)
``cancelled``             jobs cancelled, or expired unstarted
``runs``, ``run_ms``      runs that ended (completed, failed or retried) and
                          their time, from start to end
``wait_ms``               those runs' waits, from when the job was ready (its
                          enqueue, its ``run_at``, its retry time) to its start
========================  =====================================================

The minutes are kept for ``EventSettings.stats_max_age_s`` (default 7 days),
then dropped; the totals per queue are kept for good. A minute is the one the
store's clock was in when the outcome happened.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from conveyor import validate
from conveyor.errors import InvalidInput

__all__ = ["Span", "Stats", "StatsPoint", "add", "series"]

MINUTE_MS = 60_000
MAX_POINTS = 20_000  # a series longer than this is refused: ask for a longer step


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """Outcomes counted over a span (see the module's table)."""

    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    cancelled: int = 0
    runs: int = 0
    run_ms: int = 0
    wait_ms: int = 0

    @property
    def mean_run_s(self) -> float | None:
        """The mean time of a run that ended (None: none did)."""
        return self.run_ms / self.runs / 1000 if self.runs else None

    @property
    def mean_wait_s(self) -> float | None:
        """The mean wait, from ready to start, of those runs (None: none)."""
        return self.wait_ms / self.runs / 1000 if self.runs else None


class StatsPoint(Stats, frozen=True, kw_only=True):
    """The outcomes of one step of a series: from ``at_ms`` (epoch ms, on
    the store's clock) for the series' step."""

    at_ms: int


_FIELDS = tuple(Stats.__struct_fields__)


def add(*parts: Stats) -> Stats:
    """The sum of ``parts``, field by field."""
    return Stats(**{name: sum(getattr(p, name) for p in parts) for name in _FIELDS})


def series(
    minutes: dict[int, Stats], *, since_ms: int, until_ms: int, step_ms: int
) -> list[StatsPoint]:
    """One point per step from the step holding ``since_ms`` to the one
    holding ``until_ms``, steps aligned on the epoch, each the sum of the
    minutes (keys: a minute's start, epoch ms) within it; empty steps are
    zero, not left out, so a chart's x-axis is even."""
    first = since_ms - since_ms % step_ms
    steps: dict[int, list[Stats]] = {at: [] for at in range(first, until_ms + 1, step_ms)}
    for minute_ms, counted in minutes.items():
        bucket = steps.get(minute_ms - minute_ms % step_ms)
        if bucket is not None:
            bucket.append(counted)
    return [
        StatsPoint(at_ms=at, **msgspec.structs.asdict(add(*parts))) for at, parts in steps.items()
    ]


class Span(msgspec.Struct, frozen=True):
    """The span and step of a series asked for, checked, in epoch ms."""

    since_ms: int
    until_ms: int
    step_ms: int

    @classmethod
    def of(
        cls,
        since: datetime | timedelta | None,
        until: datetime | None,
        step: timedelta | float,
        *,
        now_ms: int,
    ) -> Span:
        """``until`` (default now) and ``since`` (a datetime, or a timedelta
        before ``until``; default an hour before), timezone-aware; ``step`` a
        whole number of minutes (seconds or a timedelta)."""
        step_ms = round(validate.seconds("step", step, allow_zero=False) * 1000)
        if step_ms % MINUTE_MS:
            raise InvalidInput("step", "must be a whole number of minutes (60, 300, ...)")
        until_ms = now_ms if until is None else _epoch_ms("until", until)
        if since is None:
            since = timedelta(hours=1)
        if isinstance(since, timedelta):
            since_ms = until_ms - round(validate.seconds("since", since) * 1000)
        else:
            since_ms = _epoch_ms("since", since)
        if since_ms > until_ms:
            raise InvalidInput("since", "must not be after until")
        if (until_ms - since_ms) // step_ms >= MAX_POINTS:
            raise InvalidInput("step", f"gives more than {MAX_POINTS} points: make it longer")
        return cls(since_ms, until_ms, step_ms)

    def series(self, minutes: dict[int, Stats]) -> list[StatsPoint]:
        return series(minutes, since_ms=self.since_ms, until_ms=self.until_ms, step_ms=self.step_ms)


def _epoch_ms(field: str, value: object) -> int:
    if not isinstance(value, datetime):
        raise InvalidInput(field, "must be a datetime")
    if value.tzinfo is None:
        raise InvalidInput(field, "must be timezone-aware (naive datetimes are ambiguous)")
    return int(value.timestamp() * 1000)
