"""The producer's side: single and bulk enqueues, and enqueue-to-start latency.

All of them use ``bench.noop`` or ``bench.stamp``, tasks with a plain
``@app.task``'s options.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from jobs import build_app
from phases import drain
from stores import Store
from workers import WorkerProcess, log

LATENCY_CONCURRENCY = 10
WARM_JOBS = 20


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(p: float) -> float:
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return round(ordered[index], 3)

    return {
        "n": len(ordered),
        "p50": pick(50),
        "p90": pick(90),
        "p99": pick(99),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


async def bench_enqueue_single(store: Store, n: int) -> dict[str, Any]:
    bench = build_app(store.url)
    async with bench.app:
        for i in range(min(50, n)):  # warm-up: connection, statement cache
            await bench.noop.enqueue(i)
        start = time.perf_counter()
        for i in range(n):
            await bench.noop.enqueue(i)
        elapsed = time.perf_counter() - start
    return {"n": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1)}


async def bench_enqueue_bulk(
    store: Store, n: int, batch: int, observe: str = "default"
) -> dict[str, Any]:
    bench = build_app(store.url, observe)
    async with bench.app:
        await bench.app.enqueue_many([bench.noop.call(i) for i in range(min(100, n))])  # warm-up
        build_s = store_s = 0.0
        start = time.perf_counter()
        for offset in range(0, n, batch):
            t0 = time.perf_counter()
            calls = [bench.noop.call(i) for i in range(offset, min(n, offset + batch))]
            t1 = time.perf_counter()
            await bench.app.enqueue_many(calls)
            t2 = time.perf_counter()
            build_s += t1 - t0
            store_s += t2 - t1
        elapsed = time.perf_counter() - start
    return {
        "observe": observe,
        "n": n,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "per_s": round(n / elapsed, 1),
        "build_calls_s": round(build_s, 3),
        "store_s": round(store_s, 3),
    }


async def bench_latency(store: Store, n: int, rate: float, idle_samples: int) -> dict[str, Any]:
    """Jobs enqueued one at a time at ``rate`` while a worker waits for them.

    The worker's job body notes when it started (``jobs.STAMPS``, in its exit
    report); the parent notes ``time.time()`` before and after each enqueue call.
    """
    bench = build_app(store.url)
    sent: dict[int, float] = {}
    returned: dict[int, float] = {}
    idle_sent: dict[int, float] = {}
    call_ms: list[float] = []
    worker = WorkerProcess(store.url, LATENCY_CONCURRENCY)
    try:
        async with bench.app:
            await worker.wait_registered(bench.app)
            for i in range(WARM_JOBS):  # warm-up: let the worker see its first jobs
                await bench.stamp.enqueue(-1 - i)
            await drain(store, WARM_JOBS, [worker], poll_s=0.01)
            interval = 1.0 / rate
            start = time.perf_counter()
            for i in range(n):
                delay = start + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.time()
                await bench.stamp.enqueue(i)
                t1 = time.time()
                sent[i], returned[i] = t0, t1
                call_ms.append((t1 - t0) * 1000)
            elapsed = time.perf_counter() - start
            await drain(store, n, [worker], poll_s=0.01, max_s=60)
            # After the worker has been idle (> 1 s), the first job waits for a slow poll.
            for k in range(idle_samples):
                log(f"  idle sample {k + 1}/{idle_samples}")
                await asyncio.sleep(1.5)
                idle_sent[n + k] = time.time()
                await bench.stamp.enqueue(n + k)
                await drain(store, 1, [worker], poll_s=0.005, max_s=30)
        report = worker.stop()
    finally:
        worker.kill()
    stamps = {int(k): v for k, v in report.pop("stamps", {}).items()}
    report.pop("sql", None)
    missing = [i for i in [*sent, *idle_sent] if i not in stamps]
    if missing:
        raise RuntimeError(f"{len(missing)} latency jobs did not run, e.g. {missing[:5]}")
    return {
        "n": n,
        "rate_target_per_s": rate,
        "rate_actual_per_s": round(n / elapsed, 1),
        "concurrency": LATENCY_CONCURRENCY,
        "enqueue_to_start_ms": percentiles([(stamps[i] - t) * 1000 for i, t in sent.items()]),
        "enqueue_call_ms": percentiles(call_ms),
        # Negative when the worker started the job before the enqueue call returned.
        "returned_to_start_ms": percentiles([(stamps[i] - t) * 1000 for i, t in returned.items()]),
        "after_idle_ms": [round((stamps[i] - t) * 1000, 3) for i, t in idle_sent.items()],
        "worker": report,
    }
