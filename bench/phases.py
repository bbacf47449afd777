"""The phases where workers run pre-enqueued jobs: process rows, backlog, scaling, idle.

A process row prefills N jobs of one kind, starts one worker process and polls
``app.counts(queue)`` until nothing is waiting, delayed or active; then it stops
the worker. Its rate is the processed count over the span of the job bodies
(first start to last end, from the worker's exit report), so it does not depend
on how many completed jobs the retention keeps. ``polled_per_s`` is a coarse
cross-check from the parent's polls.

Store calls per job: on Redis from ``INFO commandstats`` (reset before the worker
starts, read once the queue is drained, minus the parent's polls at their measured
cost); on SQLite from the worker's own statement trace (``--trace-sql``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from conveyor import Conveyor, Task
from jobs import QUEUE, build_app, observe_of
from stores import Store, Stores, diff
from workers import WorkerProcess, cpu_seconds, log, spans, wait_workers

RUN_TIMEOUT_S = 1800.0
PREFILL_BATCH = 10_000
SCALING_CONCURRENCY = 50


async def prefill(app: Conveyor, task: Task[[int], Any], n: int) -> None:
    for offset in range(0, n, PREFILL_BATCH):
        await app.enqueue_many(
            [task.call(i) for i in range(offset, min(n, offset + PREFILL_BATCH))]
        )


@dataclass
class Drain:
    """What the parent saw while the workers ran."""

    polls: int = 0
    drained: bool = False
    polled_per_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[float, float | None, int]] = field(default_factory=list)  # t, RSS, left


async def drain(
    store: Store,
    n: int,
    workers: list[WorkerProcess],
    *,
    poll_s: float | None = None,
    max_s: float = RUN_TIMEOUT_S,
    sample_rss: bool = False,
) -> Drain:
    """Poll ``app.counts`` until no job of the queue is unfinished, or ``max_s``
    have passed; with ``sample_rss``, note the first worker's RSS once a second."""
    poll_s = store.poll_s if poll_s is None else poll_s
    seen = Drain()
    start = time.perf_counter()
    next_sample = start
    first_seen: float | None = None
    while True:
        for worker in workers:
            worker.check_alive()
        left, counts = await store.unfinished()
        seen.polls += 1
        now = time.perf_counter()
        if first_seen is None and left < n:
            first_seen = now
        if sample_rss and now >= next_sample:
            seen.samples.append((round(now - start, 1), workers[0].rss_mb(), left))
            next_sample += 1.0
        if left == 0:
            seen.drained = True
            break
        if now - start > max_s:
            break
        await asyncio.sleep(poll_s)
    seen.counts = {s.value: c for s, c in counts.items() if c}
    if seen.drained and first_seen is not None and now > first_seen:
        # Misses up to one poll at each end: a coarse cross-check only.
        seen.polled_per_s = round(n / (now - first_seen + poll_s), 1)
    return seen


def per_job(calls: dict[str, float], n: int) -> dict[str, float]:
    return {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v}


class StoreCalls:
    """Server-side figures around a run: command counts and server CPU (Redis)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.poll: dict[str, float] | None = None
        self.before: dict[str, int] | None = None
        self.cpu_before: float | None = None

    async def start(self) -> None:
        self.poll = await self.store.poll_cost()
        self.store.reset_command_stats()
        self.before = self.store.command_stats()
        self.cpu_before = self.store.server_cpu_s()

    def stop(self, polls: int) -> dict[str, Any]:
        after, cpu_after = self.store.command_stats(), self.store.server_cpu_s()
        if self.before is None or after is None or self.poll is None:
            return {}
        calls: dict[str, float] = dict(diff(self.before, after))
        for name, cost in self.poll.items():  # the parent's polls
            calls[name] = max(0.0, calls.get(name, 0) - cost * polls)
        result: dict[str, Any] = {"calls": calls, "polls": polls, "poll_commands": self.poll}
        if self.cpu_before is not None and cpu_after is not None:
            result["server_cpu_s"] = cpu_after - self.cpu_before  # the polls' share included
        return result


def rates(reports: list[dict[str, Any]], seen: Drain, n: int) -> dict[str, Any]:
    processed, seconds = spans(reports)
    result: dict[str, Any] = {
        "n": n,
        "processed": processed,
        "seconds": round(seconds, 3),
        "per_s": round(processed / seconds, 1) if seconds > 0 else None,
        "drained": seen.drained,
        "counts_at_end": seen.counts,
    }
    if seen.polled_per_s:
        result["polled_per_s"] = seen.polled_per_s
    return result


def store_figures(result: dict[str, Any], server: dict[str, Any], jobs: int) -> None:
    """Adds per-job store figures to a row's result."""
    jobs = max(jobs, 1)
    if "calls" in server:
        calls = server["calls"]
        result["script_calls_per_job"] = round(
            sum(v for k, v in calls.items() if k.startswith("eval")) / jobs, 3
        )
        result["commands_per_job_total"] = round(sum(calls.values()) / jobs, 3)
        result["commands_per_job"] = per_job(calls, jobs)
        result["polls"] = server["polls"]
        result["poll_commands"] = server["poll_commands"]
    if "server_cpu_s" in server:
        result["server_cpu_us_per_job"] = round(server["server_cpu_s"] / jobs * 1e6, 1)


def sql_figures(result: dict[str, Any], sql: dict[str, Any] | None, jobs: int) -> None:
    if not sql:
        return
    jobs = max(jobs, 1)
    result["sql_transactions_per_job"] = round(sql["transactions"] / jobs, 4)
    result["sql_statements_per_job"] = round(sql["statements"] / jobs, 3)
    result["sql"] = {
        **{k: v for k, v in sql.items() if k != "by_statement"},
        "by_statement_per_job": per_job(sql["by_statement"], jobs),
    }


async def bench_process(
    stores: Stores, store: Store, kind: str, n: int, concurrency: int, *, trace_sql: bool
) -> dict[str, Any]:
    observe = observe_of(kind)
    bench = build_app(store.url, observe)
    async with bench.app:
        await prefill(bench.app, bench.tasks[kind], n)
    io_url = stores.io_url() if kind == "io" else None
    log(f"  {n} jobs enqueued; starting worker (concurrency={concurrency})")
    server = StoreCalls(store)
    await server.start()
    worker = WorkerProcess(
        store.url, concurrency, io_url=io_url, trace_sql=trace_sql, observe=observe
    )
    try:
        seen = await drain(store, n, [worker])
        calls = server.stop(seen.polls)
        report = worker.stop()
    finally:
        worker.kill()
    result = {
        "kind": kind,
        "observe": observe,
        "retention": retention_name(kind),
        "concurrency": concurrency,
        **rates([report], seen, n),
    }
    if io_url is not None:
        result["io_incr_total"] = stores.io_count()
    processed = result["processed"]
    cpu_s = report.get("cpu_user_s", 0.0) + report.get("cpu_system_s", 0.0)
    result["worker_cpu_us_per_job"] = round(cpu_s / max(processed, 1) * 1e6, 1)
    store_figures(result, calls, processed)
    sql_figures(result, report.pop("sql", None), processed)
    report.pop("stamps", None)
    result["worker"] = report
    return result


def retention_name(kind: str) -> str:
    return "keep_all" if kind.endswith("keep_all") else "default"


async def bench_backlog(store: Store, n: int, concurrency: int, max_s: float) -> dict[str, Any]:
    """A big backlog on the defaults: the worker's RSS once a second, and its rate."""
    bench = build_app(store.url)
    started = time.perf_counter()
    async with bench.app:
        await prefill(bench.app, bench.noop, n)
    log(f"  {n} jobs enqueued in {time.perf_counter() - started:.1f} s; starting worker")
    server = StoreCalls(store)
    await server.start()
    worker = WorkerProcess(store.url, concurrency)
    try:
        seen = await drain(store, n, [worker], poll_s=1.0, max_s=max_s, sample_rss=True)
        calls = server.stop(seen.polls)
        report = worker.stop()
    finally:
        worker.kill()
    if not seen.drained:
        log(f"  stopped after {max_s:.0f} s (--backlog-max-s): the queue was not drained")
    result = {
        "kind": "noop",
        "retention": "default",
        "concurrency": concurrency,
        **rates([report], seen, n),
    }
    rss = [r for _, r, _ in seen.samples if r is not None]
    result["worker_rss_mb"] = {
        "peak_vm_hwm": report.get("vm_hwm_mb"),
        "first_sample": rss[0] if rss else None,
        "max_sample": max(rss) if rss else None,
        "last_sample": rss[-1] if rss else None,
    }
    result["samples"] = {
        "every_s": 1.0,
        "columns": ["t_s", "rss_mb", "unfinished"],
        "rows": seen.samples,
    }
    store_figures(result, calls, result["processed"])
    report.pop("stamps", None)
    report.pop("sql", None)
    result["worker"] = report
    return result


async def bench_scaling(stores: Stores, n: int, processes: tuple[int, ...]) -> dict[str, Any]:
    """Throughput of 1, 2, 4... worker processes on the same pre-enqueued jobs.

    The queue is paused while the workers start, and resumed once all of them have
    registered, so no worker gets a head start.
    """
    runs: dict[str, Any] = {}
    for count in processes:
        log(f"  {count} worker process(es), concurrency {SCALING_CONCURRENCY} each, {n} jobs")
        store = stores.fresh(f"scaling{count}")
        try:
            app = await store.app()
            await prefill(app, build_app(store.url).noop, n)
            await app.pause(QUEUE)
            server = StoreCalls(store)
            await server.start()
            workers = [WorkerProcess(store.url, SCALING_CONCURRENCY) for _ in range(count)]
            try:
                await wait_workers(app, workers)
                await app.resume(QUEUE)
                seen = await drain(store, n, workers)
                calls = server.stop(seen.polls)
                reports = [w.stop() for w in workers]
            finally:
                for w in workers:
                    w.kill()
        finally:
            await store.close()
        run = {"processes": count, "concurrency": SCALING_CONCURRENCY, **rates(reports, seen, n)}
        run["processed_per_worker"] = [r.get("processed") for r in reports]
        run["worker_vm_hwm_mb"] = [r.get("vm_hwm_mb") for r in reports]
        run["worker_source_digests"] = [r.get("source_digest") for r in reports]
        store_figures(run, calls, run["processed"])
        run.pop("commands_per_job", None)
        runs[f"workers_{count}"] = run
        log(f"  -> {run['per_s']} jobs/s")
    return {"n": n, "runs": runs}


async def bench_idle(store: Store, seconds: float) -> dict[str, Any]:
    """CPU an idle worker uses: measured after it has had no work for 2 s."""
    worker = WorkerProcess(store.url, 10)
    try:
        await worker.wait_registered(await store.app())
        await asyncio.sleep(2.0)  # past the warm, fast-polling second
        before, started = cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(seconds)
        used, elapsed = cpu_seconds(worker.pid) - before, time.monotonic() - started
    finally:
        worker.stop()
    return {
        "seconds": round(elapsed, 2),
        "cpu_s": round(used, 3),
        "cpu_percent": round(100 * used / elapsed, 2),
    }
