"""The phases where a worker runs pre-enqueued jobs: process, scaling, idle."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobs import QUEUE, build_app
from stores import Store, Stores
from workers import WorkerProcess, cpu_seconds, log, wait_workers

RUN_TIMEOUT_S = 900.0
PROCESS_PHASES = {"process1": 1, "process50": 50, "process100": 100, "process200": 200}


def per_job(before: dict[str, int] | None, after: dict[str, int] | None, n: int) -> Any:
    """Server commands per completed job between two ``command_stats`` snapshots."""
    if before is None or after is None or n <= 0:
        return None
    calls = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v}


async def bench_idle(store: Store, seconds: float) -> dict[str, Any]:
    """CPU an idle worker uses: measured after it has had no work for 2 s."""
    worker = WorkerProcess(store.url, 10)
    try:
        async with build_app(store.url).app as app:
            await worker.wait_registered(app)
        await asyncio.sleep(2.0)  # past the warm, fast-polling second
        before, started = cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(seconds)
        used, elapsed = cpu_seconds(worker.pid) - before, time.monotonic() - started
    finally:
        worker.stop()
    return {"seconds": round(elapsed, 2), "cpu_s": round(used, 3),
            "cpu_percent": round(100 * used / elapsed, 2)}  # fmt: skip


async def prefill(url: str, n: int) -> None:
    bench = build_app(url)
    async with bench.app:
        for offset in range(0, n, 10_000):
            calls = [bench.noop.call(i) for i in range(offset, min(n, offset + 10_000))]
            await bench.app.enqueue_many(calls)


async def wait_completed(store: Store, n: int, workers: list[WorkerProcess]) -> tuple[float, int]:
    """Poll until ``n`` jobs are completed. Returns the polled rate (first completion
    seen to all seen, padded by one poll; 0.0 if not measurable) and the polls made."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    first_seen: float | None = None
    done = polls = 0
    while done < n:
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done}/{n} jobs completed in {RUN_TIMEOUT_S}s")
        await asyncio.sleep(store.poll_s)
        done = await store.count_completed()
        polls += 1
        if first_seen is None and done > 0:
            first_seen = time.perf_counter()
    all_seen = time.perf_counter()
    if first_seen is None or all_seen <= first_seen:
        return 0.0, polls
    # Coarse cross-check from the parent's polling (misses up to one poll at each end).
    return round(n / (all_seen - first_seen + store.poll_s), 1), polls


async def bench_process(store: Store, n: int, concurrency: int) -> dict[str, Any]:
    await prefill(store.url, n)
    log(f"  {n} jobs enqueued; starting worker (concurrency={concurrency})")
    store.reset_command_stats()
    stats_before, server_cpu_before = store.command_stats(), store.server_cpu_s()
    worker = WorkerProcess(store.url, concurrency)
    try:
        polled, polls = await wait_completed(store, n, [worker])
        report = worker.stop()
    finally:
        worker.kill()
    stats_after, server_cpu_after = store.command_stats(), store.server_cpu_s()
    completed, first_start, last_finish = await store.completed_span()
    span_s = max(last_finish - first_start, 1) / 1000
    result: dict[str, Any] = {
        "n": n,
        "concurrency": concurrency,
        "completed": completed,
        "seconds": round(span_s, 3),
        "per_s": round(completed / span_s, 1),
        "worker": report,
    }
    if polled:
        result["polled_per_s"] = polled
    worker_cpu_s = report.get("cpu_user_s", 0.0) + report.get("cpu_system_s", 0.0)
    result["worker_cpu_us_per_job"] = round(worker_cpu_s / max(completed, 1) * 1e6, 1)
    if server_cpu_before is not None and server_cpu_after is not None:
        server_cpu_s = server_cpu_after - server_cpu_before  # includes the parent's polls
        result["server_cpu_us_per_job"] = round(server_cpu_s / max(completed, 1) * 1e6, 1)
    commands = per_job(stats_before, stats_after, completed)
    if commands is not None:
        # Includes worker start-up and shutdown, and the parent's polls (each one
        # app.counts(): 1 hkeys, 1 hgetall and 7 zcard).
        result["polls"] = polls
        result["commands_per_job"] = commands
    return result


async def bench_scaling(
    stores: Stores, n: int, processes: tuple[int, ...], concurrency: int
) -> dict[str, Any]:
    """Throughput of 1, 2, 4... worker processes on the same pre-enqueued jobs.

    The queue is paused while the workers start, and resumed once all of them have
    registered, so no worker gets a head start.
    """
    runs: dict[str, Any] = {}
    for count in processes:
        log(f"  {count} worker process(es), concurrency {concurrency} each, {n} jobs")
        store = stores.fresh(f"scaling{count}")
        try:
            await prefill(store.url, n)
            app = build_app(store.url).app
            async with app:
                await app.pause(QUEUE)
                workers = [WorkerProcess(store.url, concurrency) for _ in range(count)]
                try:
                    await wait_workers(app, workers)
                    await app.resume(QUEUE)
                    polled, _ = await wait_completed(store, n, workers)
                    reports = [w.stop() for w in workers]
                finally:
                    for w in workers:
                        w.kill()
            completed, first_start, last_finish = await store.completed_span()
        finally:
            await store.close()
        span_s = max(last_finish - first_start, 1) / 1000
        runs[f"workers_{count}"] = {
            "processes": count,
            "concurrency": concurrency,
            "completed": completed,
            "seconds": round(span_s, 3),
            "per_s": round(completed / span_s, 1),
            "polled_per_s": polled,
            "processed_per_worker": [r.get("processed") for r in reports],
            "worker_vm_hwm_mb": [r.get("vm_hwm_mb") for r in reports],
            "worker_source_digests": [r.get("source_digest") for r in reports],
        }
        log(f"  -> {runs[f'workers_{count}']['per_s']} jobs/s")
    return {"n": n, "runs": runs}
