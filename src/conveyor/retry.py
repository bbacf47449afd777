"""Backoff policies (how long a failed job waits before its next attempt), and
what task code raises to steer its retries: ``Retry`` (try again, counted as
an attempt), ``NonRetryable`` (fail now, skip the remaining attempts) and
``RateLimited`` (the service called said "too many requests": try later, no
attempt counted, and hold back the queue or the group meanwhile).

A policy is a small frozen value stored with each job, so a job keeps the
policy it was enqueued with even if the code changes before it retries.
Exponential backoff uses "full jitter" (a uniform draw between half the
computed delay and the delay), which spreads retries of jobs that failed
together, e.g. after an outage of the service they call.
"""

from __future__ import annotations

import random
from typing import Literal

import msgspec

from conveyor import validate
from conveyor.errors import ConveyorError, InvalidArguments, InvalidInput, UnknownTask

__all__ = ["Backoff"]


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    kind: Literal["fixed", "exponential"]
    base: float
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = False

    def __post_init__(self) -> None:
        validate.seconds("backoff", self.base)
        validate.seconds("backoff", self.cap)
        if not 1 <= self.factor <= 100:
            raise InvalidInput("backoff", "factor must be between 1 and 100")
        if self.cap < self.base:
            raise InvalidInput("backoff", "cap must be >= base")

    @classmethod
    def fixed(cls, delay: float) -> Backoff:
        return cls("fixed", validate.seconds("backoff", delay))

    @classmethod
    def exponential(
        cls, base: float, *, factor: float = 2.0, cap: float = 3600.0, jitter: bool = True
    ) -> Backoff:
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            raise InvalidInput("backoff", "factor must be a number")
        base = validate.seconds("backoff", base)
        return cls("exponential", base, float(factor), validate.seconds("backoff", cap), jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.kind == "fixed":
            return self.base
        exponent = min(max(0, attempt - 1), 1000)  # no float overflow on huge attempt counts
        delay = min(self.cap, self.base * self.factor**exponent)
        if self.jitter:
            delay = (rng or random).uniform(delay / 2, delay)
        return delay


class Retry(ConveyorError):
    """Raise from a task to run it again.

    The retry counts as an attempt; once attempts are exhausted the job fails.
    ``delay`` (seconds) overrides the task's backoff for this retry. The static
    methods build backoff policies for ``@app.task(backoff=...)``.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:

        super().__init__(reason)
        self.delay = None if delay is None else validate.seconds("delay", delay)

    @staticmethod
    def fixed(delay: float) -> Backoff:
        """Wait ``delay`` seconds before every retry."""
        return Backoff.fixed(delay)

    @staticmethod
    def exponential(
        base: float, *, factor: float = 2.0, cap: float = 3600.0, jitter: bool = True
    ) -> Backoff:
        """Wait ``base * factor**(attempt-1)`` seconds, at most ``cap``, with full jitter."""
        return Backoff.exponential(base, factor=factor, cap=cap, jitter=jitter)


class NonRetryable(ConveyorError):
    """Raise from a task to fail the job at once, whatever attempts remain."""


class RateLimited(ConveyorError):
    """Raise from a task when the service it calls answers "too many requests"
    (an HTTP 429 with ``Retry-After``, say).

    The job goes back to ``waiting`` without spending an attempt, and for
    ``delay`` seconds no worker starts a job of its queue (with
    ``group=True``, of its group; a job without a group then holds its
    queue). Other queues and groups run on.
    """

    def __init__(self, delay: float, *, group: bool = False, reason: str = "rate limited") -> None:

        super().__init__(reason)
        self.delay = validate.seconds("delay", delay, allow_zero=False)
        self.group = bool(group)


def is_final(exc: BaseException) -> bool:
    """An error no retry can fix: the job fails at once, whatever attempts
    remain (in the worker and in a sandbox's child alike)."""
    return isinstance(exc, NonRetryable | InvalidArguments | UnknownTask)
