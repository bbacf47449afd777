"""How long ``app.counts(queue)`` and ``app.queues()`` take with a million
jobs in the store, against a hundred: counting must not scan the jobs.

Fills a fresh store with ``--jobs`` waiting jobs (bulk enqueues of 10,000),
then times each call ``--calls`` times. Prints one JSON object.

    .venv/bin/python bench/counts.py [--backend sqlite|redis|cluster] [--jobs 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from conveyor import Conveyor
from stores import one_store
from workers import log

BATCH = 10_000


async def timed(app: Conveyor, calls: int) -> dict[str, float]:
    figures = {}
    for name, call in (("counts", lambda: app.counts("default")), ("queues", app.queues)):
        seconds = []
        for _ in range(calls):
            started = time.perf_counter()
            await call()
            seconds.append(time.perf_counter() - started)
        figures[f"{name}_ms_p50"] = round(statistics.median(seconds) * 1000, 3)
        figures[f"{name}_ms_max"] = round(max(seconds) * 1000, 3)
    return figures


async def measure(url: str, jobs: int, calls: int) -> dict[str, Any]:
    app = Conveyor(url)

    @app.task(name="bench.count")
    async def count(i: int) -> None: ...

    async with app:
        await app.enqueue_many([count.call(i) for i in range(100)])
        small = await timed(app, calls)
        started = time.perf_counter()
        for first in range(100, jobs, BATCH):
            await app.enqueue_many([count.call(i) for i in range(first, min(jobs, first + BATCH))])
        filled_s = time.perf_counter() - started
        counted = (await app.counts("default"))["waiting"]
        large = await timed(app, calls)
    return {"jobs": counted, "fill_s": round(filled_s, 1), "at_100_jobs": small, "at_jobs": large}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "cluster"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with one_store(args.backend, "counts") as url:
        log(f"counts: {args.jobs} jobs, {args.calls} calls each")
        result = asyncio.run(measure(url, args.jobs, args.calls))
    print(json.dumps({"backend": args.backend, **result}, indent=1))


if __name__ == "__main__":
    main()
