"""How fair groups' turns are, measured: group A enqueues 10,000 jobs, a
worker starts on them, then group B enqueues 10; how many of A's jobs start
between B's enqueue and B's last start? The rotation promises at most
``k * (G - 1)`` (here 10, B's 10 jobs behind one other group) plus the jobs of
claims already under way (at most twice the worker's concurrency).

    .venv/bin/python bench/fairness.py [--backend sqlite|redis|both] [--runs 3]

Prints one JSON line per run and a summary per store and concurrency. The
worker runs in this process (the start order is read from memory); Redis is
a private ``redis-server`` started here, as for ``bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.redis_server import RedisServer

from conveyor import Conveyor, Retention, Worker, WorkerSettings

BACKLOG = 10_000
SMALL = 10
CONCURRENCIES = (1, 10, 50)


async def one_run(url: str, concurrency: int) -> dict[str, float]:
    starts: list[str] = []
    a_running, b_done = asyncio.Event(), asyncio.Event()
    app = Conveyor(url)

    @app.task(keep_completed=Retention(max_count=0))
    async def tenant_job(tenant: str) -> None:
        starts.append(tenant)
        if len(starts) >= 200:
            a_running.set()
        if tenant == "b" and starts.count("b") == SMALL:
            b_done.set()
        await asyncio.sleep(0)

    async with app:
        await app.enqueue_many([tenant_job.configure(group="a").call("a") for _ in range(BACKLOG)])
        worker = Worker(app, WorkerSettings(concurrency=concurrency))
        running = asyncio.create_task(worker.run())
        await a_running.wait()
        a_before = len(starts)
        began = time.perf_counter()
        await app.enqueue_many([tenant_job.configure(group="b").call("b") for _ in range(SMALL)])
        await b_done.wait()
        waited = time.perf_counter() - began
        worker.stop()
        await running
    last_b = len(starts) - 1 - starts[::-1].index("b")
    return {
        "concurrency": concurrency,
        "a_started_meanwhile": starts[a_before : last_b + 1].count("a"),
        "bound": SMALL + 2 * concurrency,
        "b_all_started_s": round(waited, 4),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis", "both"), default="both")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    stores = ["sqlite", "redis"] if options.backend == "both" else [options.backend]
    with tempfile.TemporaryDirectory() as tmp:
        redis = None
        if "redis" in stores:
            redis = RedisServer(Path(tmp) / "redis")
            redis.start()
        try:
            for store in stores:
                for concurrency in CONCURRENCIES:
                    seen = []
                    for run in range(options.runs):
                        if store == "redis":
                            assert redis is not None
                            redis.flushall()
                            url = redis.url
                        else:
                            url = f"sqlite:///{tmp}/fair-{concurrency}-{run}.db"
                        result = await one_run(url, concurrency)
                        print(json.dumps({"store": store, **result}), flush=True)
                        seen.append(result["a_started_meanwhile"])
                    print(
                        f"# {store} concurrency {concurrency}: A started {min(seen)}-{max(seen)}"
                        f" while B's {SMALL} started (bound {SMALL + 2 * concurrency},"
                        f" 1% of A's backlog is {BACKLOG // 100})",
                        flush=True,
                    )
        finally:
            if redis is not None:
                redis.stop()


if __name__ == "__main__":
    asyncio.run(main())
