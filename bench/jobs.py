"""The bench's tasks, declared as a user declares them, and what their bodies record.

The app is built the same way in the parent (which enqueues) and in the worker
process (which runs the bodies). Every task but one gets the options of a plain
``@app.task``: the default queue and the default retention (the newest 1000
completed jobs per task, for at most a day). The exception, ``noop_keep_all``,
keeps every completed job: it is a comparison row and says so in its name.

The default retention deletes completed jobs, so throughput is not read from
them: each body notes, in this process's memory, when the first job started and
when the last one ended (``SPAN``), and the worker's exit report carries those.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from conveyor import Conveyor, Retention, Task

QUEUE = "default"  # a plain @app.task's queue, and a worker's default
KEEP_ALL = Retention(max_count=None, max_age_s=None)
IO_URL_ENV = "CONVEYOR_BENCH_IO_URL"  # the bench's own redis-server, for the I/O job
IO_KEY = "bench:io"
# How much of what Conveyor records an app runs with: the defaults, or one of
# the two comparisons that tell what events, statistics and metrics cost.
OBSERVE = {
    "default": "the defaults: a job event and the statistics written with each change",
    "bare": "Conveyor(url, events=False): no events, no statistics (NOT the default)",
    "monitored": "the defaults plus conveyor.monitor.Monitor(app), as `conveyor worker "
    "--metrics-port` runs: the job histograms too (NOT the default)",
}
OBSERVE_ENV = "CONVEYOR_BENCH_OBSERVE"  # the worker process's level, from its parent

# Kinds of process rows: the task each runs, and a note for the README and the JSON.
KINDS: dict[str, str] = {
    "noop": "async no-op",
    "sync": "sync no-op (a plain def: runs in the worker's thread pool)",
    "io": "one network round trip: async INCR on the bench's own redis-server",
    "noop_keep_all": "async no-op, keep_completed=Retention(None, None): NOT the default",
    "noop_bare": f"async no-op; {OBSERVE['bare']}",
    "noop_monitored": f"async no-op; {OBSERVE['monitored']}",
}


def observe_of(kind: str) -> str:
    """The ``OBSERVE`` level a kind of row runs its apps with."""
    level = kind.rpartition("_")[2]
    return level if level in OBSERVE else "default"


class Span:
    """First start, last end and number of ended job bodies in this process."""

    def __init__(self) -> None:
        self.first_start: float | None = None
        self.last_end = 0.0
        self.ended = 0
        self._lock = threading.Lock()  # sync bodies end on several threads

    def start(self) -> None:
        if self.first_start is None:
            self.first_start = time.time()

    def end(self) -> None:
        now = time.time()
        with self._lock:
            self.ended += 1
            if now > self.last_end:
                self.last_end = now

    def report(self) -> dict[str, Any]:
        return {"first_start": self.first_start, "last_end": self.last_end, "ended": self.ended}


SPAN = Span()
STAMPS: dict[int, float] = {}  # latency jobs: argument -> when its body started
_io: aioredis.Redis | None = None


def io_client() -> aioredis.Redis:
    """One client per worker process, made by the first I/O job."""
    global _io
    if _io is None:
        _io = aioredis.Redis.from_url(os.environ[IO_URL_ENV])
    return _io


async def close_io() -> None:
    global _io
    if _io is not None:
        await _io.aclose()
        _io = None


@dataclass
class BenchApp:
    app: Conveyor
    tasks: dict[str, Task[[int], Any]]  # by kind
    stamp: Task[[int], Any]

    @property
    def noop(self) -> Task[[int], Any]:
        return self.tasks["noop"]


def build_app(url: str, observe: str = "default") -> BenchApp:
    app = Conveyor(url, events=observe != "bare")
    if observe == "monitored":
        from conveyor.monitor import Monitor

        Monitor(app)  # its histograms are the app's middleware from now on

    @app.task(name="bench.noop")
    async def noop(i: int) -> None:
        SPAN.start()
        SPAN.end()

    @app.task(name="bench.sync_noop")
    def sync_noop(i: int) -> None:
        SPAN.start()
        SPAN.end()

    @app.task(name="bench.io")
    async def io(i: int) -> None:
        SPAN.start()
        await io_client().incr(IO_KEY)
        SPAN.end()

    @app.task(name="bench.noop_keep_all", keep_completed=KEEP_ALL)
    async def noop_keep_all(i: int) -> None:
        SPAN.start()
        SPAN.end()

    @app.task(name="bench.stamp")
    async def stamp(i: int) -> None:
        # The wall-clock time at which the body started, compared in the parent with
        # its time.time() taken just before the enqueue (same host, same clock).
        STAMPS[i] = time.time()

    tasks: dict[str, Task[[int], Any]] = {
        "noop": noop,
        "sync": sync_noop,
        "io": io,
        "noop_keep_all": noop_keep_all,
        "noop_bare": noop,
        "noop_monitored": noop,
    }
    assert tasks.keys() == KINDS.keys()
    return BenchApp(app=app, tasks=tasks, stamp=stamp)
