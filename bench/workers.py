"""Worker processes: the worker mode of ``bench.py``, and the parent's handle on one.

A worker runs in its own OS process (``bench.py --worker URL --concurrency C``),
so producer and consumer share neither an event loop nor a GIL, as in a real
deployment. It stops on SIGTERM and prints one JSON line, its exit report: the
jobs it processed, the span of its job bodies (``jobs.SPAN``), the latency
stamps, its CPU time, and with ``--trace-sql`` the SQLite statements it ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Worker, WorkerSettings
from jobs import IO_URL_ENV, OBSERVE_ENV, SPAN, STAMPS, build_app, close_io

WORKER_START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0
TRACE_KEY_CHARS = 40  # statements are counted by their first characters
TRACE_KEYS = 500  # at most this many distinct keys per connection; then "other"
REPEAT = "(trigger step)"  # SQLite traces a trigger's steps as repeats of their statement
CONTROL = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def source_digest() -> str:
    """A short hash of Conveyor's ``.py`` and ``.lua`` files: tells apart runs of other code."""
    import conveyor

    root = Path(conveyor.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".lua")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


# -- worker mode -------------------------------------------------------------------------


class SqlTrace:
    """Counts the SQLite statements this process runs, with ``set_trace_callback``
    on every connection Conveyor opens. Each connection is used by one thread at a
    time, so each gets its own counts and needs no lock."""

    def __init__(self) -> None:
        self.per_connection: list[dict[str, int]] = []

    def install(self) -> None:
        from conveyor.backends.sqlite import connection

        original = connection.connect

        def connect(path: str, **kwargs: Any) -> sqlite3.Connection:
            conn = original(path, **kwargs)
            conn.set_trace_callback(self._callback())
            return conn

        connection.connect = connect  # type: ignore[assignment,unused-ignore]

    def _callback(self) -> Callable[[str], None]:
        counts: dict[str, int] = {}
        self.per_connection.append(counts)
        last = [""]

        def trace(sql: str) -> None:
            if sql == last[0] and not sql.startswith("PRAGMA"):
                counts[REPEAT] = counts.get(REPEAT, 0) + 1
                return
            last[0] = sql
            key = sql[:TRACE_KEY_CHARS].split("'", 1)[0]
            if key not in counts and len(counts) >= TRACE_KEYS:
                key = "other"
            counts[key] = counts.get(key, 0) + 1

        return trace

    def report(self) -> dict[str, Any]:
        total: dict[str, int] = {}
        for counts in self.per_connection:
            for key, n in counts.items():
                total[key] = total.get(key, 0) + n
        control = sum(n for k, n in total.items() if k.startswith(CONTROL))
        polls = sum(n for k, n in total.items() if k.startswith("PRAGMA data_version"))
        repeats = total.get(REPEAT, 0)
        return {
            "transactions": sum(n for k, n in total.items() if k.startswith("COMMIT")),
            "statements": sum(total.values()) - control - polls - repeats,
            "control_statements": control,
            "data_version_polls": polls,
            "trigger_steps": repeats,
            "connections": len(self.per_connection),
            "by_statement": dict(sorted(total.items(), key=lambda kv: -kv[1])[:15]),
        }


async def worker_main(url: str, concurrency: int, trace_sql: bool) -> None:
    digest = source_digest()  # the code this process imported (it may change during a run)
    trace = SqlTrace() if trace_sql else None
    if trace is not None:
        trace.install()
    bench = build_app(url, os.environ.get(OBSERVE_ENV, "default"))
    worker = Worker(bench.app, WorkerSettings(concurrency=concurrency))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await bench.app.close()
        await close_io()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "processed": worker.processed,
        "span": SPAN.report(),
        "stamps": STAMPS,
        "sql": None if trace is None else trace.report(),
        "vm_hwm_at_exit_mb": read_status_mb(os.getpid(), "VmHWM"),
        # ru_maxrss survives execve on Linux, so it can show the forking parent's
        # RSS: an upper bound only. VmHWM (/proc) is this process's own peak.
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_system_s": round(usage.ru_stime, 3),
        "source_digest": digest,
    }
    print(json.dumps(report), flush=True)


# -- the parent's side -------------------------------------------------------------------


def read_status_mb(pid: int, field: str) -> float | None:
    """``VmRSS`` or ``VmHWM`` of a process, in MB (from ``/proc/<pid>/status``)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """One worker in its own OS process (``bench.py --worker URL``)."""

    def __init__(
        self,
        url: str,
        concurrency: int,
        *,
        io_url: str | None = None,
        trace_sql: bool = False,
        observe: str = "default",
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_URL"}
        env[OBSERVE_ENV] = observe
        if io_url is not None:
            env[IO_URL_ENV] = io_url
        cmd = [
            sys.executable,
            str(Path(__file__).with_name("bench.py")),
            "--worker",
            url,
            "--concurrency",
            str(concurrency),
            *(["--trace-sql"] if trace_sql else []),
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

    def rss_mb(self) -> float | None:
        return read_status_mb(self.pid, "VmRSS")

    async def wait_registered(self, app: Conveyor) -> None:
        """Until the worker's first heartbeat is stored (it has connected and is claiming)."""
        await wait_workers(app, [self])

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait, and return the worker's exit report (plus its VmHWM)."""
        hwm = read_status_mb(self.pid, "VmHWM")
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT_S)
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


def spans(reports: list[dict[str, Any]]) -> tuple[int, float]:
    """Job bodies ended, and seconds from the first start to the last end, over the
    reports of workers on this host (``time.time()`` is one clock for all of them)."""
    ended = sum(r.get("span", {}).get("ended", 0) for r in reports)
    starts = [r["span"]["first_start"] for r in reports if r.get("span", {}).get("first_start")]
    ends = [r["span"]["last_end"] for r in reports if r.get("span", {}).get("ended")]
    if not starts or not ends:
        return ended, 0.0
    return ended, max(ends) - min(starts)
