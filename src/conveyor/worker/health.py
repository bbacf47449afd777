"""How a worker sees its store: reachable or not, and since when.

While the store is unreachable every part of the worker keeps retrying, but
the log gets one line per ``LOG_EVERY_S``, not one per attempt. Once it is
back, ``settled()`` tells the stall check to wait until live workers have had
time to renew their leases: after an outage every lease looks expired.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("conveyor.worker")

LOG_EVERY_S = 5.0
RETRY_CAP_S = 1.0  # retries at least once a second: back to work within ~1 s of the store


class StoreHealth:
    def __init__(self) -> None:
        self.down = False
        self._back_at = float("-inf")
        self._logged_at = float("-inf")
        self._failures = 0

    def failed(self, what: str, exc: BaseException) -> float:
        """Note a call that found the store unreachable; returns the delay
        before the caller's next try (capped exponential)."""
        now = time.monotonic()
        self._failures += 1
        if not self.down or now - self._logged_at >= LOG_EVERY_S:
            log.warning("%s failed, store unreachable (retrying): %s", what, exc)
            self._logged_at = now
        self.down = True
        return min(RETRY_CAP_S, 0.05 * 2.0 ** min(self._failures, 16))

    def ok(self) -> None:
        """Note a call that reached the store."""
        if self.down:
            self.down = False
            self._failures = 0
            self._back_at = time.monotonic()
            log.warning("store reachable again")

    def settled(self, seconds: float) -> bool:
        """Reachable, and for at least ``seconds`` since the last outage."""
        return not self.down and time.monotonic() - self._back_at >= seconds
