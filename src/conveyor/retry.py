"""Backoff policies: how long a failed job waits before its next attempt.

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
from conveyor.errors import InvalidInput

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
