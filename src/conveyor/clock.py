"""Where "now" comes from.

Backends ask their clock for the time, and every decision a store makes (a
delay, a lease, a rate window, a schedule tick) takes "now" from it; only
checks made before anything reaches the store (that a ``run_at`` or a TTL is
in range, in ``task.py`` and ``validate.py``) read the host's clock. On
SQLite (one host) that is the host's wall clock; on Redis it is the server's
``TIME``, and this clock only adds its ``offset_ms``, so the clocks of the
machines that run workers never decide a delay, a lease, a rate window or a
schedule tick.

Two knobs, for tests only:

- ``offset_ms`` shifts the store's clock, so tests can move time forward
  through a backoff or a delay instead of sleeping through it.
- ``skew_ms`` makes this process's own wall clock wrong by that much, as on
  a host whose clock drifted; it is read from ``CONVEYOR_TEST_CLOCK_SKEW_MS``
  when not given, so a test can start worker processes with skewed clocks.
  On Redis it changes nothing that matters (the tests check that); on SQLite
  the host's clock is the store's, so every process there shares it anyway.
"""

from __future__ import annotations

import os
import time

__all__ = ["Clock"]

SKEW_ENV = "CONVEYOR_TEST_CLOCK_SKEW_MS"


class Clock:
    def __init__(self, offset_ms: int = 0, *, skew_ms: int | None = None) -> None:
        self.offset_ms = offset_ms
        self.skew_ms = int(os.environ.get(SKEW_ENV) or 0) if skew_ms is None else skew_ms

    def now_ms(self) -> int:
        """This process's wall clock (with its skew), plus the offset."""
        return time.time_ns() // 1_000_000 + self.skew_ms + self.offset_ms

    def advance(self, seconds: float) -> None:
        """Move this clock forward (tests only; time never goes back)."""
        self.offset_ms += int(seconds * 1000)
