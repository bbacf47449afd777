"""When a backend trims finished jobs to their task's retention.

Trimming on every finish would make each completion pay for a scan; instead a
backend trims every ``max_count / 10`` finishes of a task (at most every
``EVERY``) or once ``INTERVAL_MS`` has passed, and deletes at most ``BATCH``
jobs each time. A task may so keep up to a tenth more jobs than its
``max_count`` for a moment; the cost per completion stays flat.
"""

from __future__ import annotations

from conveyor.job import Retention

BATCH = 1000
EVERY = 100
INTERVAL_MS = 1000


class TrimSchedule:
    """Per ``(task, state)``: finishes left until the next trim, and when the last ran.

    Not thread-safe: each backend calls it from one thread.
    """

    def __init__(self) -> None:
        self._due: dict[tuple[str, str], tuple[int, int]] = {}

    def due(self, task: str, state: str, retention: Retention, now: int) -> bool:
        if not retention.limited:
            return False
        key = (task, state)
        left, last = self._due.get(key, (0, 0))
        if left > 1 and now - last < INTERVAL_MS:
            self._due[key] = (left - 1, last)
            return False
        return True

    def done(self, task: str, state: str, retention: Retention, now: int, deleted: int) -> None:
        every = min(EVERY, max(1, (retention.max_count or EVERY * 10) // 10))
        self._due[(task, state)] = (1 if deleted >= BATCH else every, now)
