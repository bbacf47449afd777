"""Conveyor throughput and latency benchmark on the SQLite backend.

Run from the project root::

    .venv/bin/python bench/bench.py            # full run (a few minutes)
    .venv/bin/python bench/bench.py --quick    # ~10x smaller smoke run
    .venv/bin/python bench/bench.py --out bench/result.json

Prints one JSON object to stdout; progress lines go to stderr. Every phase uses a
fresh database file in a temporary directory. Workers run in a separate OS process
(this script, started again with ``--worker``), so producer and consumer do not
share an event loop or a GIL, as in a real deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Retention, Task, Worker, WorkerSettings

QUEUE = "bench"
KEEP_ALL = Retention(max_count=None, max_age_s=None)
TARGETS: dict[str, float] = {
    "process_per_s": 5_000,
    "enqueue_bulk_per_s": 50_000,
    "latency_p50_ms": 5.0,
}
WORKER_START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 900.0
POLL_S = 0.05


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the app (built the same way in the parent and in the worker process) -------------


@dataclass
class BenchApp:
    app: Conveyor
    noop: Task[[int], Coroutine[Any, Any, None]]
    stamp: Task[[int], Coroutine[Any, Any, float]]


def build_app(db_path: Path) -> BenchApp:
    app = Conveyor(f"sqlite:///{db_path.resolve()}")

    @app.task(name="bench.noop", queue=QUEUE, keep_completed=KEEP_ALL)
    async def noop(i: int) -> None:
        return None

    @app.task(name="bench.stamp", queue=QUEUE, keep_completed=KEEP_ALL)
    async def stamp(i: int) -> float:
        # The wall-clock time at which the job body started: compared with the
        # producer's time.time() taken just before enqueue (same host, same clock).
        return time.time()

    return BenchApp(app=app, noop=noop, stamp=stamp)


# -- worker mode -------------------------------------------------------------------------


async def worker_main(db_path: Path, concurrency: int) -> None:
    bench = build_app(db_path)
    worker = Worker(bench.app, WorkerSettings(queues=(QUEUE,), concurrency=concurrency))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await bench.app.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "processed": worker.processed,
        "vm_hwm_at_exit_mb": read_vm_hwm_mb(os.getpid()),
        # ru_maxrss survives execve on Linux, so it can show the forking parent's
        # RSS: an upper bound only. VmHWM (/proc) is this process's own peak.
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_system_s": round(usage.ru_stime, 3),
    }
    print(json.dumps(report), flush=True)


# -- helpers for the parent ----------------------------------------------------------------


def fresh_db(tmp: Path, name: str) -> Path:
    """A path for a new database file in its own folder (nothing is reused between phases)."""
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)) / "bench.db"


def db_query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count_completed(db_path: Path) -> int:
    rows = db_query(
        db_path, "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'completed'", (QUEUE,)
    )
    return int(rows[0][0])


def read_vm_hwm_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return None


class WorkerProcess:
    """One worker in its own OS process (this script with ``--worker``)."""

    def __init__(self, db_path: Path, concurrency: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_URL"}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            str(db_path),
            "--concurrency",
            str(concurrency),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
        self.pid = self.proc.pid
        self.report: dict[str, Any] = {}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker process exited early with code {self.proc.returncode}")

    async def wait_registered(self, app: Conveyor) -> None:
        """Until the worker's first heartbeat is stored (it has connected and is claiming)."""
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        while not await app.workers():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("worker did not register in time")
            await asyncio.sleep(0.02)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait, and return the worker's exit report (plus its VmHWM)."""
        hwm = read_vm_hwm_mb(self.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                self.report = json.loads(line)
                break
        self.report["vm_hwm_mb"] = hwm
        self.report["exit_code"] = self.proc.returncode
        return self.report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench_idle(db_path: Path, seconds: float) -> dict[str, Any]:
    """CPU an idle worker uses: measured after it has had no work for 2 s."""
    worker = WorkerProcess(db_path, 10)
    try:
        async with build_app(db_path).app as app:
            await worker.wait_registered(app)
        await asyncio.sleep(2.0)  # past the warm, fast-polling second
        before, started = cpu_seconds(worker.pid), time.monotonic()
        await asyncio.sleep(seconds)
        used, elapsed = cpu_seconds(worker.pid) - before, time.monotonic() - started
    finally:
        worker.stop()
    return {"seconds": round(elapsed, 2), "cpu_s": round(used, 3),
            "cpu_percent": round(100 * used / elapsed, 2)}  # fmt: skip


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


# -- phases ------------------------------------------------------------------------------


async def bench_enqueue_single(db_path: Path, n: int) -> dict[str, Any]:
    bench = build_app(db_path)
    async with bench.app:
        for i in range(min(50, n)):  # warm-up: connection, statement cache
            await bench.noop.enqueue(i)
        start = time.perf_counter()
        for i in range(n):
            await bench.noop.enqueue(i)
        elapsed = time.perf_counter() - start
    return {"n": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1)}


async def bench_enqueue_bulk(db_path: Path, n: int, batch: int) -> dict[str, Any]:
    bench = build_app(db_path)
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


async def bench_process(db_path: Path, n: int, concurrency: int) -> dict[str, Any]:
    bench = build_app(db_path)
    async with bench.app:
        for offset in range(0, n, 10_000):
            calls = [bench.noop.call(i) for i in range(offset, min(n, offset + 10_000))]
            await bench.app.enqueue_many(calls)
    log(f"  {n} jobs enqueued; starting worker (concurrency={concurrency})")
    worker = WorkerProcess(db_path, concurrency)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        first_seen: float | None = None
        done = 0
        while done < n:
            worker.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done}/{n} jobs completed in {RUN_TIMEOUT_S}s")
            await asyncio.sleep(POLL_S)
            done = count_completed(db_path)
            if first_seen is None and done > 0:
                first_seen = time.perf_counter()
        all_seen = time.perf_counter()
        report = worker.stop()
    finally:
        worker.kill()
    ((completed, first_start, last_finish),) = db_query(
        db_path,
        "SELECT count(*), min(started_at), max(finished_at) FROM jobs"
        " WHERE queue = ? AND state = 'completed'",
        (QUEUE,),
    )
    span_s = max(last_finish - first_start, 1) / 1000
    result: dict[str, Any] = {
        "n": n,
        "concurrency": concurrency,
        "completed": completed,
        "seconds": round(span_s, 3),
        "per_s": round(completed / span_s, 1),
        "worker": report,
    }
    if first_seen is not None and all_seen > first_seen:
        # Coarse cross-check from the parent's polling (misses up to one poll at each end).
        result["polled_per_s"] = round(n / (all_seen - first_seen + POLL_S), 1)
    return result


async def bench_latency(
    db_path: Path, n: int, rate: float, concurrency: int, idle_samples: int
) -> dict[str, Any]:
    bench = build_app(db_path)
    sent: dict[str, float] = {}
    idle_sent: dict[str, float] = {}
    enqueue_call_ms: list[float] = []
    worker = WorkerProcess(db_path, concurrency)
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
            while count_completed(db_path) < n + len(warm):
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
    rows = db_query(
        db_path,
        "SELECT id, created_at, started_at, result FROM jobs WHERE state = 'completed'",
    )
    precise: list[float] = []
    coarse: list[float] = []
    idle: list[float] = []
    for job_id, created_at, started_at, result in rows:
        started = json.loads(result)
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


# -- driver --------------------------------------------------------------------------------


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
PHASES = ("single", "bulk", "process1", "process50", "latency", "idle")


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
    }


async def run_all(sizes: Sizes, phases: tuple[str, ...], tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "single" in phases:
        log(f"enqueue single: {sizes.single} sequential enqueues")
        db = fresh_db(tmp, "single")
        results["enqueue_single"] = await bench_enqueue_single(db, sizes.single)
        log(f"  -> {results['enqueue_single']['per_s']} jobs/s")
    if "bulk" in phases:
        log(f"enqueue bulk: {sizes.bulk} jobs in batches of {sizes.bulk_batch}")
        db = fresh_db(tmp, "bulk")
        results["enqueue_bulk"] = await bench_enqueue_bulk(db, sizes.bulk, sizes.bulk_batch)
        log(f"  -> {results['enqueue_bulk']['per_s']} jobs/s")
    for phase, n, concurrency in (
        ("process1", sizes.process_c1, 1),
        ("process50", sizes.process_c50, 50),
    ):
        if phase not in phases:
            continue
        log(f"process: {n} jobs, one worker process, concurrency {concurrency}")
        db = fresh_db(tmp, phase)
        results[f"process_c{concurrency}"] = await bench_process(db, n, concurrency)
        log(f"  -> {results[f'process_c{concurrency}']['per_s']} jobs/s")
    if "latency" in phases:
        log(f"latency: {sizes.latency} jobs at ~{sizes.latency_rate}/s, worker concurrency 10")
        db = fresh_db(tmp, "latency")
        results["latency"] = await bench_latency(
            db, sizes.latency, sizes.latency_rate, 10, sizes.idle_samples
        )
        log(f"  -> p50 {results['latency']['enqueue_to_start_ms']['p50']} ms")
    if "idle" in phases:
        log(f"idle: CPU of a worker with nothing to do, over {sizes.idle_seconds} s")
        results["idle"] = await bench_idle(fresh_db(tmp, "idle"), sizes.idle_seconds)
        log(f"  -> {results['idle']['cpu_percent']} % of one core")
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if "enqueue_single" in results:
        summary["enqueue_single_per_s"] = results["enqueue_single"]["per_s"]
    if "enqueue_bulk" in results:
        summary["enqueue_bulk_per_s"] = results["enqueue_bulk"]["per_s"]
    process = {
        key: results[f"process_c{key}"]["per_s"] for key in (1, 50) if f"process_c{key}" in results
    }
    if process:
        summary["process_per_s"] = {f"concurrency_{k}": v for k, v in process.items()}
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        summary["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "p99", "max")}
    if "process_c50" in results:
        worker = results["process_c50"]["worker"]
        summary["worker_peak_rss_mb"] = (
            worker.get("vm_hwm_mb") or worker.get("vm_hwm_at_exit_mb") or worker.get("ru_maxrss_mb")
        )
    if "idle" in results:
        summary["idle_worker_cpu_percent"] = results["idle"]["cpu_percent"]
    met: dict[str, bool] = {}
    if "process_c50" in results:
        met["process_per_s"] = results["process_c50"]["per_s"] >= TARGETS["process_per_s"]
    if "enqueue_bulk" in results:
        met["enqueue_bulk_per_s"] = (
            results["enqueue_bulk"]["per_s"] >= TARGETS["enqueue_bulk_per_s"]
        )
    if "latency" in results:
        met["latency_p50_ms"] = (
            results["latency"]["enqueue_to_start_ms"]["p50"] <= TARGETS["latency_p50_ms"]
        )
    summary["targets_met"] = met
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="~10x smaller counts (smoke run)")
    parser.add_argument("--out", type=Path, help="also write the JSON result to this file")
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default: all of {','.join(PHASES)})",
    )
    parser.add_argument("--worker", type=Path, metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=10, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # CONVEYOR_URL would override the benchmark's own database files.
    os.environ.pop("CONVEYOR_URL", None)
    args = parse_args(argv)
    if args.worker is not None:
        asyncio.run(worker_main(args.worker, args.concurrency))
        return
    phases = tuple(p.strip() for p in args.only.split(",") if p.strip())
    unknown = set(phases) - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases: {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        results = asyncio.run(run_all(sizes, phases, Path(tmp)))
    output: dict[str, Any] = {
        **summarize(results),
        "targets": TARGETS,
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
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
