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
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
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
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobState, Retention, Task, Worker, WorkerSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests/
from tests.redis_server import RedisServer, server_binary

QUEUE = "bench"
KEEP_ALL = Retention(max_count=None, max_age_s=None)
TARGETS: dict[str, float] = {  # SQLite
    "process_per_s": 5_000,
    "enqueue_bulk_per_s": 50_000,
    "latency_p50_ms": 5.0,
}
REDIS_TARGETS: dict[str, float] = {
    "process_per_s": 10_000,  # one worker process, its best concurrency
    "enqueue_single_per_s": 6_000,
    "enqueue_bulk_per_s": 100_000,
    "latency_p50_ms": 0.5,
    "latency_p99_ms": 2.0,
    "worker_peak_rss_mb": 40,
}
WORKER_START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 900.0
POLL_S = 0.05
REDIS_POLL_S = 0.02


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def to_ms(value: datetime | int) -> int:
    """Epoch ms from a ``datetime`` (``Job`` fields) or an int (SQLite columns)."""
    if isinstance(value, int):
        return value
    return round(value.timestamp() * 1000)


# -- the app (built the same way in the parent and in the worker process) -------------


@dataclass
class BenchApp:
    app: Conveyor
    noop: Task[[int], Coroutine[Any, Any, None]]
    stamp: Task[[int], Coroutine[Any, Any, float]]


def build_app(url: str) -> BenchApp:
    app = Conveyor(url)

    @app.task(name="bench.noop", queue=QUEUE, keep_completed=KEEP_ALL)
    async def noop(i: int) -> None:
        return None

    @app.task(name="bench.stamp", queue=QUEUE, keep_completed=KEEP_ALL)
    async def stamp(i: int) -> float:
        # The wall-clock time at which the job body started: compared with the
        # producer's time.time() taken just before enqueue (same host, same clock).
        return time.time()

    return BenchApp(app=app, noop=noop, stamp=stamp)


def sqlite_url(db_path: Path) -> str:
    return f"sqlite:///{db_path.resolve()}"


# -- worker mode -------------------------------------------------------------------------


async def worker_main(url: str, concurrency: int) -> None:
    digest = source_digest()  # the code this process imported (it may change during a run)
    bench = build_app(url)
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
        "source_digest": digest,
    }
    print(json.dumps(report), flush=True)


# -- the stores: one fresh store per phase -------------------------------------------------


def db_query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class Store:
    """One phase's empty job store, and how the parent reads results from it."""

    url: str
    poll_s: float = POLL_S

    async def count_completed(self) -> int:
        raise NotImplementedError

    async def completed_span(self) -> tuple[int, int, int]:
        """Completed jobs, the earliest ``started_at`` and the latest ``finished_at`` (ms)."""
        raise NotImplementedError

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        """Per completed job: id, ``created_at``, ``started_at`` (ms) and its result."""
        raise NotImplementedError

    def command_stats(self) -> dict[str, int] | None:
        """Calls per server command since the last reset (Redis only)."""
        return None

    def reset_command_stats(self) -> None:
        return None

    def server_cpu_s(self) -> float | None:
        """CPU time the server process has used so far (Redis only)."""
        return None

    async def close(self) -> None:
        return None


class SQLiteStore(Store):
    """A new database file in its own folder (nothing is reused between phases)."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.db_path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)) / "bench.db"
        self.url = sqlite_url(self.db_path)

    async def count_completed(self) -> int:
        rows = db_query(
            self.db_path,
            "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'completed'",
            (QUEUE,),
        )
        return int(rows[0][0])

    async def completed_span(self) -> tuple[int, int, int]:
        ((completed, first_start, last_finish),) = db_query(
            self.db_path,
            "SELECT count(*), min(started_at), max(finished_at) FROM jobs"
            " WHERE queue = ? AND state = 'completed'",
            (QUEUE,),
        )
        return int(completed), int(first_start), int(last_finish)

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        rows = db_query(
            self.db_path,
            "SELECT id, created_at, started_at, result FROM jobs WHERE state = 'completed'",
        )
        return [(job_id, c, s, json.loads(r)) for job_id, c, s, r in rows]


def redis_info(server: RedisServer) -> dict[str, Any]:
    with server.client() as client:
        info = client.info("server")
    return {
        "redis_server": info.get("redis_version"),
        "redis_binary": server_binary(),
        "redis_py": __import__("redis").__version__,
        "hiredis": _hiredis_version(),
    }


def _hiredis_version() -> str | None:
    try:
        import hiredis  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(hiredis.__version__)


class RedisStore(Store):
    """The private server, emptied (``FLUSHALL``) for this phase; results are read
    through Conveyor's public API, never from the keys."""

    poll_s = REDIS_POLL_S

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url
        with server.client() as client:
            client.flushall()
            client.config_resetstat()
        self._app: Conveyor | None = None

    async def app(self) -> Conveyor:
        if self._app is None:
            self._app = build_app(self.url).app
            await self._app.connect()
        return self._app

    async def count_completed(self) -> int:
        counts = await (await self.app()).counts(QUEUE)
        return counts[JobState.COMPLETED]

    async def _completed_jobs(self) -> list[Any]:
        app = await self.app()
        total = await self.count_completed()
        if total == 0:
            return []
        return await app.list_jobs(JobState.COMPLETED, queue=QUEUE, limit=total)

    async def completed_span(self) -> tuple[int, int, int]:
        jobs = await self._completed_jobs()
        if not jobs:
            return 0, 0, 0
        first = min(to_ms(j.started_at) for j in jobs)
        last = max(to_ms(j.finished_at) for j in jobs)
        return len(jobs), first, last

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        return [
            (j.id, to_ms(j.created_at), to_ms(j.started_at), j.result)
            for j in await self._completed_jobs()
        ]

    def reset_command_stats(self) -> None:
        with self.server.client() as client:
            client.config_resetstat()

    def server_cpu_s(self) -> float | None:
        return None if self.server.proc is None else cpu_seconds(self.server.proc.pid)

    def command_stats(self) -> dict[str, int]:
        with self.server.client() as client:
            raw = client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in raw.items()
            if isinstance(value, dict)
        }

    async def close(self) -> None:
        if self._app is not None:
            await self._app.close()
            self._app = None


class Stores:
    """Makes each phase's fresh store; owns the Redis server when there is one."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.redis: RedisServer | None = None

    def __enter__(self) -> Stores:
        if self.backend == "redis":
            self.redis = RedisServer(self.tmp / "redis")
            self.redis.start()
            log(f"redis-server started: {self.redis.url} (AOF on, in {self.redis.directory})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.redis is not None:
            self.redis.stop()
            log("redis-server stopped")

    def fresh(self, name: str) -> Store:
        if self.redis is not None:
            return RedisStore(self.redis)
        return SQLiteStore(self.tmp, name)

    def info(self) -> dict[str, Any]:
        return redis_info(self.redis) if self.redis is not None else {}


# -- helpers for the parent ----------------------------------------------------------------


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
    """One worker in its own OS process (this script with ``--worker URL``)."""

    def __init__(self, url: str, concurrency: int) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_URL"}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            url,
            "--concurrency",
            str(concurrency),
        ]
        # The worker's log goes to a file: a flood of warnings (e.g. a full connection
        # pool) would drown the progress lines. stop() counts it and shows the start.
        self.stderr = tempfile.TemporaryFile(mode="w+", errors="replace")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.stderr, env=env, text=True
        )
        self.pid = self.proc.pid
        self.report: dict[str, Any] = {}

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker process exited early with code {self.proc.returncode}")

    async def wait_registered(self, app: Conveyor) -> None:
        """Until the worker's first heartbeat is stored (it has connected and is claiming)."""
        await wait_workers(app, [self])

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
        self.report.update(self.read_stderr())
        self.stderr.close()
        return self.report

    def read_stderr(self) -> dict[str, Any]:
        self.stderr.seek(0)
        lines = self.stderr.read().splitlines()
        if not lines:
            return {"stderr_lines": 0}
        log(f"  worker {self.pid} logged {len(lines)} lines, first: {lines[0][:160]}")
        return {"stderr_lines": len(lines), "stderr_head": [line[:300] for line in lines[:3]]}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


async def wait_workers(app: Conveyor, workers: list[WorkerProcess]) -> None:
    """Until every worker's first heartbeat is stored (connected and claiming)."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    while len(await app.workers()) < len(workers):
        for worker in workers:
            worker.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not register in time")
        await asyncio.sleep(0.02)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def per_job(before: dict[str, int] | None, after: dict[str, int] | None, n: int) -> Any:
    """Server commands per completed job between two ``command_stats`` snapshots."""
    if before is None or after is None or n <= 0:
        return None
    calls = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v}


# -- phases ------------------------------------------------------------------------------


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
PROCESS_PHASES = {"process1": 1, "process50": 50, "process100": 100, "process200": 200}
SCALING_PROCESSES = (1, 2, 4)
SCALING_CONCURRENCY = 50


def source_digest() -> str:
    """A short hash of Conveyor's ``.py`` and ``.lua`` files: tells apart runs of other code."""
    import conveyor

    root = Path(conveyor.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".lua")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "conveyor_source_digest": source_digest(),
    }


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


def worker_rss_mb(worker: dict[str, Any]) -> Any:
    return worker.get("vm_hwm_mb") or worker.get("vm_hwm_at_exit_mb") or worker.get("ru_maxrss_mb")


def find_values(tree: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in nested dicts and lists."""
    if isinstance(tree, dict):
        found = [tree[key]] if key in tree else []
        return found + [v for child in tree.values() for v in find_values(child, key)]
    if isinstance(tree, list):
        return [v for child in tree for v in find_values(child, key)]
    return []


def summarize(results: dict[str, Any], backend: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if "enqueue_single" in results:
        summary["enqueue_single_per_s"] = results["enqueue_single"]["per_s"]
    if "enqueue_bulk" in results:
        summary["enqueue_bulk_per_s"] = results["enqueue_bulk"]["per_s"]
    process = {
        c: results[f"process_c{c}"]["per_s"]
        for c in PROCESS_PHASES.values()
        if f"process_c{c}" in results
    }
    if process:
        summary["process_per_s"] = {f"concurrency_{k}": v for k, v in process.items()}
    best = max(process, key=lambda c: process[c]) if process else None
    if backend == "redis" and best is not None:
        summary["process_best"] = {"concurrency": best, "per_s": process[best]}
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        summary["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "p99", "max")}
    if "process_c50" in results:
        summary["worker_peak_rss_mb"] = worker_rss_mb(results["process_c50"]["worker"])
    if backend == "redis":
        rss = {
            f"concurrency_{c}": worker_rss_mb(results[f"process_c{c}"]["worker"]) for c in process
        }
        if rss:
            summary["worker_peak_rss_mb_by_concurrency"] = rss
    if "idle" in results:
        summary["idle_worker_cpu_percent"] = results["idle"]["cpu_percent"]
    if "scaling" in results:
        summary["scaling_per_s"] = {k: v["per_s"] for k, v in results["scaling"]["runs"].items()}
    digests = find_values(results, "source_digest")
    digests = sorted({d for ds in find_values(results, "worker_source_digests") for d in ds}
                     .union(digests) - {None})  # fmt: skip
    if len(digests) > 1:  # someone edited the source during the run: phases are not comparable
        summary["source_changed_during_run"] = digests
    targets = REDIS_TARGETS if backend == "redis" else TARGETS
    met: dict[str, bool] = {}
    if backend == "redis":
        if best is not None:
            met["process_per_s"] = process[best] >= targets["process_per_s"]
    elif "process_c50" in results:
        met["process_per_s"] = results["process_c50"]["per_s"] >= targets["process_per_s"]
    if "enqueue_single" in results and "enqueue_single_per_s" in targets:
        met["enqueue_single_per_s"] = (
            results["enqueue_single"]["per_s"] >= targets["enqueue_single_per_s"]
        )
    if "enqueue_bulk" in results:
        met["enqueue_bulk_per_s"] = (
            results["enqueue_bulk"]["per_s"] >= targets["enqueue_bulk_per_s"]
        )
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        met["latency_p50_ms"] = lat["p50"] <= targets["latency_p50_ms"]
        if "latency_p99_ms" in targets:
            met["latency_p99_ms"] = lat["p99"] <= targets["latency_p99_ms"]
    if "worker_peak_rss_mb" in targets and summary.get("worker_peak_rss_mb") is not None:
        met["worker_peak_rss_mb"] = summary["worker_peak_rss_mb"] <= targets["worker_peak_rss_mb"]
    summary["targets_met"] = met
    return summary


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
