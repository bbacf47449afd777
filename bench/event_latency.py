"""How long a job event takes to reach a subscriber in another process, at
light load, on the defaults (``app.events()`` as a user writes it).

A subscriber process (this script with ``--subscribe``) iterates
``app.events(kinds=["enqueued"])`` and prints each event's job id with the
time it got it; the parent enqueues ``--jobs`` jobs at ``--rate`` per second,
noting the time just before each enqueue call. Latency is the subscriber's
time minus that one (same host, same clock), so it includes the enqueue
call itself (reported apart as ``enqueue_call``): an upper bound on commit
to delivery. Prints one JSON object.

    .venv/bin/python bench/event_latency.py [--backend sqlite|redis|cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any

from conveyor import Conveyor
from stores import one_store
from workers import log


async def subscribe(url: str, jobs: int) -> None:
    app = Conveyor(url)
    async with app:
        events = await app.events(kinds=["enqueued"]).start()
        print("ready", flush=True)
        seen = 0
        async for event in events:
            print(event.job_id, time.time(), flush=True)
            seen += 1
            if seen == jobs:
                return


async def measure(url: str, jobs: int, rate: float) -> dict[str, Any]:
    app = Conveyor(url)

    @app.task(name="bench.event")
    async def event(i: int) -> None: ...

    async with app:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--subscribe",
            url,
            "--jobs",
            str(jobs),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        assert (await child.stdout.readline()).strip() == b"ready"
        sent: dict[str, float] = {}
        calls = []
        for i in range(jobs):
            started = time.time()
            handle = await event.configure(job_id=f"ev-{i}").enqueue(i)
            calls.append(time.time() - started)
            sent[handle.id] = started
            await asyncio.sleep(max(0.0, started + 1 / rate - time.time()))
        got: dict[str, float] = {}
        while len(got) < jobs:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            job_id, at = line.decode().split()
            got[job_id] = float(at)
        await child.wait()
    latency = sorted((got[job_id] - sent[job_id]) * 1000 for job_id in sent)
    return {
        "jobs": jobs,
        "rate_per_s": rate,
        "latency_ms": {
            "p50": round(statistics.median(latency), 3),
            "p99": round(latency[int(len(latency) * 0.99) - 1], 3),
            "max": round(latency[-1], 3),
        },
        "enqueue_call_ms_p50": round(statistics.median(calls) * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "cluster"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="enqueues per second")
    parser.add_argument("--subscribe", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscribe:
        asyncio.run(subscribe(args.subscribe, args.jobs))
        return
    with one_store(args.backend, "events") as url:
        log(f"event latency: {args.jobs} enqueues at {args.rate}/s, subscriber in a child")
        result = asyncio.run(measure(url, args.jobs, args.rate))
    print(json.dumps({"backend": args.backend, **result}, indent=1))


if __name__ == "__main__":
    main()
