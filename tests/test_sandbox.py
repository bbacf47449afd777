"""Sandboxed tasks with real child processes: results from another pid, a hard
timeout and a cancel that kill the child's process group, a crashing child,
progress and logs forwarded to the store, retry semantics across the pipe, and
no process left behind by a stopped or killed worker.

On SQLite only: the sandbox sits between the worker and the task's code and
never touches the store, so Redis would run the same path again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import ConfigurationError, Conveyor, Retry, Worker, WorkerSettings, chain

from . import sandbox_app
from .conftest import StartWorker, eventually
from .processes import ROOT, exited

STORES = ("sqlite",)  # the sandbox is the worker's, whatever the store


def gone(pid: int) -> bool:
    """No such process, or a zombie (dead, waiting for a parent that is not ours)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def all_gone(*pids: int) -> bool:
    return all(gone(pid) for pid in pids)


async def logged_pids(app: Conveyor, job_id: str) -> list[int]:
    """The pids ``sandbox_app.spin_with_grandchild`` logs: its own and its grandchild's."""
    found: list[int] = []

    async def logged() -> bool:
        lines = [e.message for e in await app.get_logs(job_id) if e.message.startswith("pids ")]
        found[:] = [int(pid) for pid in lines[0].split()[1:]] if lines else []
        return bool(found)

    await eventually(logged)
    return found


@pytest.mark.timeout(30)
async def test_a_sandboxed_job_runs_in_a_reused_child_and_returns_its_result(
    app: Conveyor, start_worker: StartWorker
) -> None:
    whoami = app.task(sandbox=True)(sandbox_app.whoami)
    shout = app.task(sandbox=True)(sandbox_app.whoami_async)
    first = await whoami.enqueue(2, 40)
    await start_worker(concurrency=1)
    job = await first.wait(10)
    assert job.state == "completed" and job.result["sum"] == 42
    assert job.result["pid"] != os.getpid()
    second = await (await shout.enqueue("hey")).wait(10)
    assert second.result == {"pid": job.result["pid"], "word": "HEY"}  # the same child


async def test_a_decorated_function_runs_decorated_in_the_child(
    app: Conveyor, start_worker: StartWorker
) -> None:
    """The child finds the function by name; one made with functools.wraps
    is the wrapper there too, not the function it wraps."""
    add = app.task(sandbox=True)(sandbox_app.add_doubled)
    handle = await add.enqueue(2, 3)
    await start_worker(concurrency=1)
    assert (await handle.wait(10)).result == 10


@pytest.mark.timeout(30)
async def test_a_stuck_job_times_out_and_its_process_group_is_killed(
    app: Conveyor, start_worker: StartWorker
) -> None:
    spin = app.task(sandbox=True, timeout=1)(sandbox_app.spin_with_grandchild)
    whoami = app.task(sandbox=True)(sandbox_app.whoami)
    handle = await spin.enqueue()
    await start_worker(concurrency=1)
    child, grandchild = await logged_pids(app, handle.id)
    job = await handle.wait(10)
    assert (job.state, job.error) == ("failed", "JobTimeout: timed out after 1.0s")
    await eventually(lambda: all_gone(child, grandchild))
    after = await (await whoami.enqueue(1, 2)).wait(10)
    assert after.state == "completed" and after.result["pid"] not in (child, grandchild)


@pytest.mark.timeout(30)
async def test_cancelling_a_running_sandboxed_job_kills_its_child(
    app: Conveyor, start_worker: StartWorker
) -> None:
    spin = app.task(sandbox=True)(sandbox_app.spin_with_grandchild)
    handle = await spin.enqueue()
    await start_worker(lease_s=0.3)
    child, grandchild = await logged_pids(app, handle.id)
    assert await app.cancel(handle.id)
    await eventually(lambda: all_gone(child, grandchild))
    assert (await app.get_job(handle.id)).state == "cancelled"


@pytest.mark.timeout(30)
async def test_a_crashing_child_fails_only_its_own_job(
    app: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    crash = app.task(sandbox=True)(sandbox_app.crash)
    wait = app.task(sandbox=True)(sandbox_app.report_then_wait)
    whoami = app.task(sandbox=True)(sandbox_app.whoami)
    gate = tmp_path / "gate"
    neighbour = await wait.enqueue(str(gate))
    await start_worker(concurrency=2)
    await eventually(lambda: _started(app, neighbour.id))
    crashed = await (await crash.enqueue(3)).wait(10)
    assert (crashed.state, crashed.error) == (
        "failed",
        "SandboxError: sandbox process died (exit code 3)",
    )
    gate.touch()
    assert (await neighbour.wait(10)).result == "ok"  # its child was untouched
    assert (await (await whoami.enqueue(1, 1)).wait(10)).result["sum"] == 2


async def _started(app: Conveyor, job_id: str) -> bool:
    return (await app.get_job(job_id)).progress == 30


@pytest.mark.timeout(30)
async def test_progress_and_logs_from_the_child_are_stored_while_it_runs(
    app: Conveyor, start_worker: StartWorker, tmp_path: Path
) -> None:
    wait = app.task(sandbox=True)(sandbox_app.report_then_wait)
    gate = tmp_path / "gate"
    handle = await wait.enqueue(str(gate))
    await start_worker()

    async def reported() -> bool:  # progress and the log line may come in two reports
        return await _started(app, handle.id) and len(await app.get_logs(handle.id)) == 1

    await eventually(reported)
    job = await app.get_job(handle.id)
    assert (job.state, job.progress_detail) == ("active", {"stage": "halfway"})
    assert [e.message for e in await app.get_logs(handle.id)] == ["started"]
    gate.touch()
    job = await handle.wait(10)
    assert (job.progress, job.progress_detail) == (100, {"stage": "done"})
    assert [e.message for e in await app.get_logs(handle.id)] == ["started", "finished"]


@pytest.mark.timeout(30)
async def test_retry_semantics_cross_the_pipe(app: Conveyor, start_worker: StartWorker) -> None:
    refuse = app.task(sandbox=True, retries=3)(sandbox_app.refuse)
    fails = app.task(sandbox=True, retries=1, backoff=Retry.fixed(0))(sandbox_app.always_fails)
    later = app.task(sandbox=True, retries=1)(sandbox_app.later)
    refused = await refuse.enqueue()
    failing = await fails.enqueue()
    delayed = await later.enqueue()
    await start_worker()
    job = await refused.wait(10)
    assert (job.state, job.attempts, job.error) == ("failed", 1, "NonRetryable: bad input")
    job = await failing.wait(10)
    assert (job.state, job.attempts, job.error) == ("failed", 2, "ValueError: boom")
    assert job.traceback is not None
    assert 'sandbox_app.py", line' in job.traceback and "in always_fails" in job.traceback

    async def waits_120s() -> bool:
        job = await app.get_job(delayed.id)
        left = job.run_at.timestamp() - app.clock.now_ms() / 1000
        return job.state == "delayed" and 115 < left <= 120

    await eventually(waits_120s)


@pytest.mark.timeout(30)
async def test_a_sandboxed_chain_step_gets_the_result_and_the_children(
    app: Conveyor, start_worker: StartWorker
) -> None:
    count = app.task(sandbox=True)(sandbox_app.count)
    total = app.task(sandbox=True)(sandbox_app.total)
    handle = await app.add_flow(chain(count.call(40), total.pipe(2)))
    await start_worker(concurrency=2)
    job = await handle.wait(15)
    assert job.state == "completed"
    assert job.result == {"sum": 42, "children": 1, "ok": 1}


@pytest.mark.timeout(30)
async def test_rate_limited_crosses_the_pipe(app: Conveyor, start_worker: StartWorker) -> None:
    limited = app.task(sandbox=True)(sandbox_app.rate_limited)
    held = await limited.configure(group="acme").enqueue()
    other = await app.task(sandbox=True)(sandbox_app.count).configure(group="zen").enqueue(7)
    await start_worker(concurrency=2)
    assert (await other.wait(10)).result == 7  # another group runs on

    async def held_back() -> bool:  # it ran (reported progress), then went back unspent
        job = await app.get_job(held.id)
        return job.state == "waiting" and job.attempts == 0 and job.progress == 1

    await eventually(held_back)


@pytest.mark.timeout(30)
async def test_functions_a_child_cannot_import(app: Conveyor, start_worker: StartWorker) -> None:
    def local() -> None: ...

    with pytest.raises(ConfigurationError, match="cannot be imported by a child process"):
        app.task(sandbox=True)(local)
    with pytest.raises(ConfigurationError):
        app.task(sandbox=True, name="anonymous")(lambda: None)
    misnamed = app.task(sandbox=True, retries=2)(sandbox_app.misnamed)
    handle = await misnamed.enqueue()
    await start_worker()
    job = await handle.wait(10)
    assert (job.state, job.attempts) == ("failed", 1)
    assert job.error == (
        "NonRetryable: cannot import tests.sandbox_app.not_here in the sandbox process: "
        "AttributeError: module 'tests.sandbox_app' has no attribute 'not_here'"
    )


@pytest.mark.timeout(30)
async def test_worker_shutdown_leaves_no_child_processes(app: Conveyor) -> None:
    spin = app.task(sandbox=True)(sandbox_app.spin_with_grandchild)
    whoami = app.task(sandbox=True)(sandbox_app.whoami)
    stuck = await spin.enqueue()
    done = await whoami.enqueue(1, 2)
    worker = Worker(app, WorkerSettings(concurrency=2, shutdown_grace_s=0.2))
    running = asyncio.create_task(worker.run())
    child, grandchild = await logged_pids(app, stuck.id)
    idle = (await done.wait(10)).result["pid"]
    assert not gone(idle)
    worker.stop()
    await asyncio.wait_for(running, 10)
    assert gone(child) and gone(idle)  # reaped before run() returned
    await eventually(lambda: all_gone(grandchild))  # killed; its death is not waited for
    assert (await app.get_job(stuck.id)).state == "waiting"  # released, as an async job is


@pytest.mark.timeout(30)
async def test_children_die_with_a_killed_worker(
    app: Conveyor, sqlite_url: str, tmp_path: Path
) -> None:
    spin = app.task(sandbox=True)(sandbox_app.spin_with_grandchild)
    handle = await spin.enqueue()
    worker = start_cli_worker(sqlite_url, tmp_path / "worker.err")
    try:
        child, grandchild = await logged_pids(app, handle.id)
        worker.kill()  # no shutdown: the children notice on their own
        assert await exited(worker) == -signal.SIGKILL
        await eventually(lambda: all_gone(child, grandchild))
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def start_cli_worker(url: str, stderr_path: Path) -> subprocess.Popen[bytes]:
    with stderr_path.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "tests.sandbox_app:app"],
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_URL": url},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
