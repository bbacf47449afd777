"""Conveyor throughput and latency benchmark, on the SQLite or the Redis backend.

Run from the project root::

    .venv/bin/python bench/bench.py                    # SQLite, full run (about 30 s)
    .venv/bin/python bench/bench.py --backend redis    # Redis, full run (a few minutes)
    .venv/bin/python bench/bench.py --quick            # ~10x smaller smoke run
    .venv/bin/python bench/bench.py --out bench/result.json

Prints one JSON object to stdout; progress lines go to stderr. On SQLite every phase
uses a fresh database file in a temporary directory. On Redis the bench starts its
own private ``redis-server`` (loopback, free port, AOF on, in a temporary directory),
runs ``FLUSHALL`` before every phase and stops the server at the end. Workers run in
a separate OS process (this script, started again with ``--worker URL``), so producer
and consumer do not share an event loop or a GIL, as in a real deployment.

The modules, flat in ``bench/``: this driver and CLI, ``jobs`` (the app and its
tasks), ``workers`` (the worker process), ``stores`` (stores and the Redis server),
``phases`` (workers running pre-enqueued jobs), ``enqueue`` (enqueues and latency)
and ``report`` (summary, targets, machine facts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from enqueue import bench_enqueue_bulk, bench_enqueue_single, bench_latency
from phases import PROCESS_PHASES, bench_idle, bench_process, bench_scaling
from report import REDIS_TARGETS, TARGETS, machine_info, summarize
from stores import Stores, sqlite_url
from workers import log, worker_main


@dataclass(frozen=True)
class Sizes:
    single: int
    bulk: int
    bulk_batch: int
    process_c1: int
    process_c50: int
    latency: int
    latency_rate: float
    idle_samples: int
    idle_seconds: float
    process_c100: int = 0
    process_c200: int = 0
    scaling: int = 0


FULL = Sizes(
    single=5_000,
    bulk=50_000,
    bulk_batch=10_000,
    process_c1=5_000,
    process_c50=20_000,
    latency=500,
    latency_rate=150.0,
    idle_samples=3,
    idle_seconds=10.0,
)
QUICK = Sizes(
    single=500,
    bulk=5_000,
    bulk_batch=1_000,
    process_c1=500,
    process_c50=2_000,
    latency=50,
    latency_rate=150.0,
    idle_samples=1,
    idle_seconds=3.0,
)
# Redis is faster: larger counts keep each timed phase at a few seconds.
REDIS_FULL = replace(
    FULL,
    single=20_000,
    bulk=200_000,
    process_c1=20_000,
    process_c50=40_000,
    process_c100=40_000,
    process_c200=40_000,
    scaling=40_000,
)
REDIS_QUICK = replace(
    QUICK,
    single=2_000,
    bulk=20_000,
    bulk_batch=10_000,
    process_c1=2_000,
    process_c50=4_000,
    process_c100=4_000,
    process_c200=4_000,
    scaling=4_000,
)
SIZES = {("sqlite", False): FULL, ("sqlite", True): QUICK,
         ("redis", False): REDIS_FULL, ("redis", True): REDIS_QUICK}  # fmt: skip
PHASES = ("single", "bulk", "process1", "process50", "latency", "idle")
REDIS_PHASES = (
    "single", "bulk", "process1", "process50", "process100", "process200", "latency", "idle",
    "scaling",
)  # fmt: skip
ALL_PHASES = REDIS_PHASES
SCALING_PROCESSES = (1, 2, 4)
SCALING_CONCURRENCY = 50


async def run_all(sizes: Sizes, phases: tuple[str, ...], stores: Stores) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "single" in phases:
        log(f"enqueue single: {sizes.single} sequential enqueues")
        store = stores.fresh("single")
        results["enqueue_single"] = await bench_enqueue_single(store, sizes.single)
        await store.close()
        log(f"  -> {results['enqueue_single']['per_s']} jobs/s")
    if "bulk" in phases:
        log(f"enqueue bulk: {sizes.bulk} jobs in batches of {sizes.bulk_batch}")
        store = stores.fresh("bulk")
        results["enqueue_bulk"] = await bench_enqueue_bulk(store, sizes.bulk, sizes.bulk_batch)
        await store.close()
        log(f"  -> {results['enqueue_bulk']['per_s']} jobs/s")
    for phase, concurrency in PROCESS_PHASES.items():
        n = getattr(sizes, f"process_c{concurrency}")
        if phase not in phases or n <= 0:
            continue
        log(f"process: {n} jobs, one worker process, concurrency {concurrency}")
        store = stores.fresh(phase)
        try:
            results[f"process_c{concurrency}"] = await bench_process(store, n, concurrency)
        finally:
            await store.close()
        log(f"  -> {results[f'process_c{concurrency}']['per_s']} jobs/s")
    if "latency" in phases:
        log(f"latency: {sizes.latency} jobs at ~{sizes.latency_rate}/s, worker concurrency 10")
        store = stores.fresh("latency")
        try:
            results["latency"] = await bench_latency(
                store, sizes.latency, sizes.latency_rate, 10, sizes.idle_samples
            )
        finally:
            await store.close()
        log(f"  -> p50 {results['latency']['enqueue_to_start_ms']['p50']} ms")
    if "idle" in phases:
        log(f"idle: CPU of a worker with nothing to do, over {sizes.idle_seconds} s")
        store = stores.fresh("idle")
        results["idle"] = await bench_idle(store, sizes.idle_seconds)
        await store.close()
        log(f"  -> {results['idle']['cpu_percent']} % of one core")
    if "scaling" in phases:
        n = sizes.scaling or sizes.process_c50
        log(f"scaling: {n} jobs, {SCALING_PROCESSES} worker processes")
        results["scaling"] = await bench_scaling(stores, n, SCALING_PROCESSES, SCALING_CONCURRENCY)
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "redis"),
        default="sqlite",
        help="job store to measure (redis: a private redis-server is started)",
    )
    parser.add_argument("--quick", action="store_true", help="~10x smaller counts (smoke run)")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.add_argument(
        "--only",
        help=f"comma-separated phases to run (default: all of {','.join(PHASES)}; "
        f"on redis also process100,process200,scaling)",
    )
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=10, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # CONVEYOR_URL would override the benchmark's own stores.
    os.environ.pop("CONVEYOR_URL", None)
    args = parse_args(argv)
    if args.worker is not None:
        url = args.worker if "://" in args.worker else sqlite_url(Path(args.worker))
        asyncio.run(worker_main(url, args.concurrency))
        return
    default = REDIS_PHASES if args.backend == "redis" else PHASES
    phases = tuple(p.strip() for p in (args.only or ",".join(default)).split(",") if p.strip())
    unknown = set(phases) - set(ALL_PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    sizes = SIZES[(args.backend, args.quick)]
    started = time.time()
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp,
        Stores(args.backend, Path(tmp)) as stores,
    ):
        info = stores.info()
        results = asyncio.run(run_all(sizes, phases, stores))
    output: dict[str, Any] = {
        "backend": args.backend,
        **summarize(results, args.backend),
        "targets": REDIS_TARGETS if args.backend == "redis" else TARGETS,
        "mode": "quick" if args.quick else "full",
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
