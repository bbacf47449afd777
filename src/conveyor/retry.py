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

from conveyor.errors import InvalidInput

__all__ = ["Backoff"]


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    kind: Literal["fixed", "exponential"]
    base: float
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = False

    @classmethod
    def fixed(cls, delay: float) -> Backoff:
        if delay < 0:
            raise InvalidInput("backoff", "delay must be >= 0")
        return cls("fixed", float(delay))

    @classmethod
    def exponential(
        cls, base: float, *, factor: float = 2.0, cap: float = 3600.0, jitter: bool = True
    ) -> Backoff:
        if base < 0:
            raise InvalidInput("backoff", "base must be >= 0")
        if factor < 1:
            raise InvalidInput("backoff", "factor must be >= 1")
        if cap < base:
            raise InvalidInput("backoff", "cap must be >= base")
        return cls("exponential", float(base), float(factor), float(cap), jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.kind == "fixed":
            return self.base
        delay = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        if self.jitter:
            delay = (rng or random).uniform(delay / 2, delay)
        return delay
