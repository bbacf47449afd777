"""The bench's app and tasks, built the same way in the parent and in the worker process."""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Retention, Task

QUEUE = "bench"
KEEP_ALL = Retention(max_count=None, max_age_s=None)


def to_ms(value: datetime | int) -> int:
    """Epoch ms from a ``datetime`` (``Job`` fields) or an int (SQLite columns)."""
    if isinstance(value, int):
        return value
    return round(value.timestamp() * 1000)


@dataclass
class BenchApp:
    app: Conveyor
    noop: Task[[int], Coroutine[Any, Any, None]]
    stamp: Task[[int], Coroutine[Any, Any, float]]


def build_app(url: str) -> BenchApp:
    app = Conveyor(url)

    @app.task(name="bench.noop", queue=QUEUE, keep_completed=KEEP_ALL)
    async def noop(i: int) -> None:
        return None

    @app.task(name="bench.stamp", queue=QUEUE, keep_completed=KEEP_ALL)
    async def stamp(i: int) -> float:
        # The wall-clock time at which the job body started: compared with the
        # producer's time.time() taken just before enqueue (same host, same clock).
        return time.time()

    return BenchApp(app=app, noop=noop, stamp=stamp)


def sqlite_url(db_path: Path) -> str:
    return f"sqlite:///{db_path.resolve()}"
