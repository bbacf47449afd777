"""Conveyor's benchmark: what a user gets on the defaults, on SQLite, Redis or a Redis Cluster.

Run from the project root::

    .venv/bin/python bench/bench.py                      # SQLite, full run
    .venv/bin/python bench/bench.py --backend redis      # a private redis-server
    .venv/bin/python bench/bench.py --backend cluster    # a private 3-master Cluster
    .venv/bin/python bench/bench.py --quick              # small counts: a smoke run
    .venv/bin/python bench/bench.py --only process,backlog --out result.json

Prints one JSON object to stdout; progress lines go to stderr. Every task is
declared as a plain ``@app.task`` (default queue, default retention); the rows
with unlimited retention are comparisons and end in ``_keep_all``. The modules:
``jobs`` (the tasks and what their bodies record), ``workers`` (the worker
process), ``stores`` (stores and servers), ``phases`` (workers draining a
queue), ``enqueue`` (enqueues and latency), ``report`` (summary and targets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from enqueue import bench_enqueue_bulk, bench_enqueue_single, bench_latency
from jobs import KINDS, OBSERVE
from phases import bench_backlog, bench_idle, bench_process, bench_scaling
from report import TARGETS, machine_info, row_key, summarize
from stores import BACKENDS, Stores, sqlite_url
from workers import log, worker_main


@dataclass(frozen=True)
class Sizes:
    single: int
    bulk: int
    bulk_batch: int
    process: int  # jobs per process row (every kind, every concurrency)
    latency: int
    latency_rate: float
    idle_samples: int
    idle_seconds: float
    backlog: int
    backlog_max_s: float
    scaling: int


FULL = Sizes(
    single=5_000,
    bulk=50_000,
    bulk_batch=10_000,
    process=20_000,
    latency=500,
    latency_rate=150.0,
    idle_samples=3,
    idle_seconds=10.0,
    backlog=500_000,
    backlog_max_s=900.0,
    scaling=20_000,
)
QUICK = Sizes(
    single=500,
    bulk=5_000,
    bulk_batch=1_000,
    process=2_000,
    latency=50,
    latency_rate=150.0,
    idle_samples=1,
    idle_seconds=3.0,
    backlog=50_000,
    backlog_max_s=20.0,
    scaling=2_000,
)
# Redis enqueues faster: larger counts keep those phases at a few seconds. Its
# default-retention rows run at 150-1,000 jobs/s on the current code: 20,000 jobs
# a row (as in the report that found it) and 10,000 a scaling run keep each near
# a minute.
REDIS_FULL = replace(FULL, single=20_000, bulk=200_000, scaling=10_000)
REDIS_QUICK = replace(QUICK, single=2_000, bulk=20_000, bulk_batch=10_000)
# On a Cluster the current code runs them at 40-170 jobs/s: fewer jobs keep a row near
# a minute (and above the 1000 the retention keeps, so that trimming shows).
CLUSTER_FULL = replace(REDIS_FULL, process=3_000, scaling=2_000)
CLUSTER_QUICK = replace(REDIS_QUICK, process=1_500, scaling=1_500)
SIZES = {
    ("sqlite", False): FULL,
    ("sqlite", True): QUICK,
    ("redis", False): REDIS_FULL,
    ("redis", True): REDIS_QUICK,
    ("cluster", False): CLUSTER_FULL,
    ("cluster", True): CLUSTER_QUICK,
}

# Phase name -> the kind of job its process rows run.
PROCESS_PHASES = {
    "process": "noop",
    "process_sync": "sync",
    "process_io": "io",
    "process_keep_all": "noop_keep_all",
    "process_bare": "noop_bare",
    "process_monitored": "noop_monitored",
}
PHASES = ("single", "bulk", "bulk_bare", *PROCESS_PHASES, "latency", "idle", "backlog", "scaling")
DEFAULT_PHASES = {
    "sqlite": tuple(p for p in PHASES if p != "scaling"),
    "redis": PHASES,
    "cluster": PHASES,
}
CONCURRENCIES = (10, 50)
BACKLOG_CONCURRENCY = 50
SCALING_PROCESSES = (1, 2, 4)


@dataclass(frozen=True)
class Plan:
    sizes: Sizes
    phases: tuple[str, ...]
    concurrencies: tuple[int, ...]
    trace_sql: bool
    rounds: int = 1  # each process row this many times, in a rotating order


async def run_all(plan: Plan, stores: Stores) -> dict[str, Any]:
    sizes, phases = plan.sizes, plan.phases
    results: dict[str, Any] = {}
    if "single" in phases:
        log(f"enqueue single: {sizes.single} sequential enqueues")
        store = stores.fresh("single")
        results["enqueue_single"] = await bench_enqueue_single(store, sizes.single)
        await store.close()
        log(f"  -> {results['enqueue_single']['per_s']} jobs/s")
    bulk = [(p, o) for p, o in (("bulk", "default"), ("bulk_bare", "bare")) if p in phases]
    bulk_runs: dict[str, list[dict[str, Any]]] = {}
    for number in range(plan.rounds):  # in turns, as the process rows below
        for phase, observe in bulk[number % 2 :] + bulk[: number % 2]:
            key = "enqueue_bulk" if observe == "default" else f"enqueue_bulk_{observe}"
            log(f"{key}: {sizes.bulk} jobs in batches of {sizes.bulk_batch} ({OBSERVE[observe]})")
            store = stores.fresh(phase)
            run = await bench_enqueue_bulk(store, sizes.bulk, sizes.bulk_batch, observe)
            bulk_runs.setdefault(key, []).append(run)
            await store.close()
            log(f"  -> {run['per_s']} jobs/s")
    for key, runs in bulk_runs.items():
        results[key] = median_row(runs)
    rows = [
        (kind, concurrency)
        for phase, kind in PROCESS_PHASES.items()
        if phase in phases
        for concurrency in plan.concurrencies
    ]
    rounds: dict[str, list[dict[str, Any]]] = {}
    for number in range(plan.rounds):
        # Each round starts one row further on: a machine that drifts during
        # a run then slows every row alike, not the last ones most.
        shift = number % len(rows) if rows else 0
        for kind, concurrency in rows[shift:] + rows[:shift]:
            key = row_key(kind, concurrency)
            log(f"{key}: {sizes.process} jobs ({KINDS[kind]}), one worker, c{concurrency}")
            row = await process_row(stores, key, kind, sizes.process, concurrency)
            log(f"  -> {describe(row)}")
            if number == 0 and plan.trace_sql and stores.backend == "sqlite":
                # Tracing costs ~1 us per statement (~5 % of a no-op job's CPU): the
                # statements are counted in a second run, not in the timed one.
                log(f"  {key} again, counting the worker's SQLite statements")
                traced = await process_row(stores, key, kind, sizes.process, concurrency, True)
                add_sql_counts(row, traced)
                log(f"  -> {describe(row)} (traced run: {traced['per_s']} jobs/s)")
            rounds.setdefault(key, []).append(row)
    for key, runs in rounds.items():
        results[key] = median_row(runs)
    if "latency" in phases:
        log(f"latency: {sizes.latency} jobs at ~{sizes.latency_rate}/s, worker concurrency 10")
        store = stores.fresh("latency")
        try:
            results["latency"] = await bench_latency(
                store, sizes.latency, sizes.latency_rate, sizes.idle_samples
            )
        finally:
            await store.close()
        lat = results["latency"]
        log(
            f"  -> p50 {lat['enqueue_to_start_ms']['p50']} ms, p99 "
            f"{lat['enqueue_to_start_ms']['p99']} ms (enqueue call p50 "
            f"{lat['enqueue_call_ms']['p50']} ms)"
        )
    if "idle" in phases:
        log(f"idle: CPU of a worker with nothing to do, over {sizes.idle_seconds} s")
        store = stores.fresh("idle")
        try:
            results["idle"] = await bench_idle(store, sizes.idle_seconds)
        finally:
            await store.close()
        log(f"  -> {results['idle']['cpu_percent']} % of one core")
    if "backlog" in phases:
        log(
            f"backlog: {sizes.backlog} no-op jobs, one worker, c{BACKLOG_CONCURRENCY}, "
            f"at most {sizes.backlog_max_s:.0f} s"
        )
        store = stores.fresh("backlog")
        try:
            results["backlog"] = await bench_backlog(
                store, sizes.backlog, BACKLOG_CONCURRENCY, sizes.backlog_max_s
            )
        finally:
            await store.close()
        backlog = results["backlog"]
        log(f"  -> {describe(backlog)}, RSS {backlog['worker_rss_mb']}")
    if "scaling" in phases:
        log(f"scaling: {sizes.scaling} jobs, {SCALING_PROCESSES} worker processes")
        results["scaling"] = await bench_scaling(stores, sizes.scaling, SCALING_PROCESSES)
    return results


async def process_row(
    stores: Stores, key: str, kind: str, n: int, concurrency: int, trace_sql: bool = False
) -> dict[str, Any]:
    store = stores.fresh(key)
    try:
        return await bench_process(stores, store, kind, n, concurrency, trace_sql=trace_sql)
    finally:
        await store.close()


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of a row with the median rate (of several rounds: all their
    rates too), with the first run's SQL counts."""
    ordered = sorted(runs, key=lambda row: row["per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    for field in ("sql_transactions_per_job", "sql_statements_per_job", "sql"):
        if field in runs[0]:
            row[field] = runs[0][field]
    if len(runs) > 1:
        row["rounds_per_s"] = [run["per_s"] for run in runs]
    return row


def add_sql_counts(row: dict[str, Any], traced: dict[str, Any]) -> None:
    """The statement counts of a traced run, into the timed run's row."""
    for field in ("sql_transactions_per_job", "sql_statements_per_job", "sql"):
        if field in traced:
            row[field] = traced[field]
    if "sql" in row:
        row["sql"]["traced_run"] = {k: traced.get(k) for k in ("n", "processed", "per_s")}


def describe(row: dict[str, Any]) -> str:
    text = f"{row['per_s']} jobs/s ({row['processed']} in {row['seconds']} s)"
    if "script_calls_per_job" in row:
        text += (
            f", {row['script_calls_per_job']} script calls and "
            f"{row['commands_per_job_total']} commands per job"
        )
    if "sql_transactions_per_job" in row:
        text += (
            f", {row['sql_transactions_per_job']} transactions and "
            f"{row['sql_statements_per_job']} statements per job"
        )
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="job store to measure (redis, cluster: private servers are started)",
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.add_argument(
        "--only",
        help=f"comma-separated phases to run, of {','.join(PHASES)} "
        "(default: all; scaling only on redis and cluster)",
    )
    parser.add_argument(
        "--concurrencies",
        default=",".join(map(str, CONCURRENCIES)),
        help="worker concurrencies of the process rows (default: 10,50)",
    )
    parser.add_argument("--process-jobs", type=int, help="jobs per process row")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the process and bulk rows this many times, each round in a rotated order, "
        "and report each row's median round (default 1)",
    )
    parser.add_argument("--backlog-jobs", type=int, help="jobs of the backlog phase")
    parser.add_argument(
        "--backlog-max-s",
        type=float,
        help="stop the backlog phase's worker after this long (default 900 s; quick: 20 s)",
    )
    parser.add_argument(
        "--no-trace-sql",
        dest="trace_sql",
        action="store_false",
        help="SQLite: do not count the worker's statements",
    )
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument(
        "--trace-sql", dest="worker_trace_sql", action="store_true", help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    phases = tuple(
        p.strip()
        for p in (args.only or ",".join(DEFAULT_PHASES[args.backend])).split(",")
        if p.strip()
    )
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    sizes = SIZES[(args.backend, args.quick)]
    overrides = {
        "process": args.process_jobs,
        "backlog": args.backlog_jobs,
        "backlog_max_s": args.backlog_max_s,
    }
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    concurrencies = tuple(int(c) for c in args.concurrencies.split(",") if c.strip())
    if args.rounds < 1:
        raise SystemExit("--rounds must be at least 1")
    return Plan(sizes, phases, concurrencies, args.trace_sql, args.rounds)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker is not None:
        url = args.worker if "://" in args.worker else sqlite_url(Path(args.worker))
        asyncio.run(worker_main(url, args.concurrency, args.worker_trace_sql))
        return
    plan = make_plan(args)
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp,
        Stores(args.backend, Path(tmp)) as stores,
    ):
        info = stores.info()
        results = asyncio.run(run_all(plan, stores))
    output: dict[str, Any] = {
        "backend": args.backend,
        **summarize(results, args.backend),
        "targets": TARGETS[args.backend],
        "mode": "quick" if args.quick else "full",
        "sizes": plan.sizes.__dict__,
        "rows": {row_key(kind, "<C>"): note for kind, note in KINDS.items()},
        "machine": {**machine_info(), **info},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "details": results,
    }
    text = json.dumps(output, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
