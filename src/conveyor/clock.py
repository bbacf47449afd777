"""Where "now" comes from.

Backends ask their clock for the time; there is no other source of "now" in
Conveyor. On SQLite (one host) that is the host's wall clock; on Redis it will
be the server's ``TIME``. ``offset_ms`` shifts it, so tests can move time
forward through a backoff or a delay instead of sleeping through it.
"""

from __future__ import annotations

import time

__all__ = ["Clock"]


class Clock:
    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def advance(self, seconds: float) -> None:
        """Move this clock forward (tests only; time never goes back)."""
        self.offset_ms += int(seconds * 1000)
