"""Draining and obliterating a big queue must not hold the store: each batch
is a short step of its own, so another client's calls go on meanwhile.

Fills a fresh store with ``--jobs`` waiting jobs (bulk enqueues of 10,000),
then drains them while a second client (its own app and connection, as
another process would be) enqueues one job after another into another queue
and times each; then fills again and obliterates, timed the same way.
Reports each action's seconds and jobs per second, and the p50, p99 and
worst latency of the other client's enqueues meanwhile (and with nothing
running, to compare). Prints one JSON object.

    .venv/bin/python bench/draining.py [--backend sqlite|redis|cluster] [--jobs 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from conveyor import Conveyor
from stores import one_store
from workers import log

BATCH = 10_000


def _app(url: str) -> tuple[Conveyor, Any]:
    app = Conveyor(url)

    @app.task(name="bench.drained")
    async def drained(i: int) -> None: ...

    return app, drained


async def fill(app: Conveyor, task: Any, jobs: int) -> None:
    for first in range(0, jobs, BATCH):
        await app.enqueue_many([task.call(i) for i in range(first, min(jobs, first + BATCH))])


async def probe(url: str, stop: asyncio.Event) -> list[float]:
    """Enqueue one job at a time into another queue until ``stop``: each one's ms."""
    app, task = _app(url)
    other = task.configure(queue="bystander")
    seconds = []
    async with app:
        await other.enqueue(-1)  # connected and warm
        while not stop.is_set():
            started = time.perf_counter()
            await other.enqueue(0)
            seconds.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
    return seconds


def _latency(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "probes": len(ms),
        "p50_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
    }


async def timed(url: str, action: Callable[[], Awaitable[int]]) -> dict[str, Any]:
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(url, stop))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    removed = await action()
    took = time.perf_counter() - started
    stop.set()
    return {
        "removed": removed,
        "seconds": round(took, 2),
        "jobs_per_s": round(removed / took),
        "other_client_enqueue": _latency(await prober),
    }


async def measure(url: str, jobs: int) -> dict[str, Any]:
    app, task = _app(url)
    async with app:
        idle = await timed(url, lambda: asyncio.sleep(1.0, result=0))
        await fill(app, task, jobs)
        drain = await timed(url, lambda: app.drain("default"))
        await fill(app, task, jobs)
        obliterate = await timed(url, lambda: app.obliterate("default"))
    return {
        "jobs": jobs,
        "idle_other_client_enqueue": idle["other_client_enqueue"],
        "drain": drain,
        "obliterate": obliterate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "cluster"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args()
    with one_store(args.backend, "draining") as url:
        log(f"draining: {args.jobs} jobs")
        result = asyncio.run(measure(url, args.jobs))
    print(json.dumps({"backend": args.backend, **result}, indent=1))


if __name__ == "__main__":
    main()
