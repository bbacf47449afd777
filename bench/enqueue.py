"""The producer's side: single and bulk enqueues, and enqueue-to-start latency."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from jobs import build_app
from stores import POLL_S, Store
from workers import WorkerProcess, log


def percentiles(values: list[float]) -> dict[str, float]:
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


async def bench_enqueue_bulk(store: Store, n: int, batch: int) -> dict[str, Any]:
    bench = build_app(store.url)
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
        "n": n,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "per_s": round(n / elapsed, 1),
        "build_calls_s": round(build_s, 3),
        "store_s": round(store_s, 3),
    }


async def bench_latency(
    store: Store, n: int, rate: float, concurrency: int, idle_samples: int
) -> dict[str, Any]:
    bench = build_app(store.url)
    sent: dict[str, float] = {}
    idle_sent: dict[str, float] = {}
    enqueue_call_ms: list[float] = []
    worker = WorkerProcess(store.url, concurrency)
    try:
        async with bench.app:
            await worker.wait_registered(bench.app)
            # Warm-up: let the worker see its first jobs before measuring.
            warm = [await bench.stamp.enqueue(-1) for _ in range(20)]
            for handle in warm:
                await handle.wait(timeout=30, poll=0.01)
            interval = 1.0 / rate
            start = time.perf_counter()
            for i in range(n):
                target = start + i * interval
                delay = target - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.time()
                handle = await bench.stamp.enqueue(i)
                enqueue_call_ms.append((time.time() - t0) * 1000)
                sent[handle.id] = t0
            elapsed = time.perf_counter() - start
            deadline = time.monotonic() + 60
            while await store.count_completed() < n + len(warm):
                worker.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("latency jobs did not complete in time")
                await asyncio.sleep(POLL_S)
            # After the worker has been idle (> 1 s), the first job waits for a slow poll.
            for i in range(idle_samples):
                log(f"  idle sample {i + 1}/{idle_samples}")
                await asyncio.sleep(1.5)
                t0 = time.time()
                handle = await bench.stamp.enqueue(n + i)
                idle_sent[handle.id] = t0
                await handle.wait(timeout=30, poll=0.01)
        report = worker.stop()
    finally:
        worker.kill()
    precise: list[float] = []
    coarse: list[float] = []
    idle: list[float] = []
    for job_id, created_at, started_at, started in await store.completed_stamps():
        if job_id in sent:
            precise.append((started - sent[job_id]) * 1000)
            coarse.append(float(started_at - created_at))
        elif job_id in idle_sent:
            idle.append(round((started - idle_sent[job_id]) * 1000, 3))
    return {
        "n": n,
        "rate_target_per_s": rate,
        "rate_actual_per_s": round(n / elapsed, 1),
        "concurrency": concurrency,
        "enqueue_to_start_ms": percentiles(precise),
        "db_started_minus_created_ms": percentiles(coarse),
        "enqueue_call_ms": percentiles(enqueue_call_ms),
        "after_idle_ms": idle,
        "worker": report,
    }
