"""Real worker processes started through the CLI, sharing one SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState

from . import apps
from .conformance.test_queue_slots import SEEDS, most_at_once
from .conftest import eventually
from .processes import Workers, exited


@pytest.fixture
def workers(sqlite_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(sqlite_url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[Conveyor]:
    async with apps.build(sqlite_url) as app:
        yield app


def counts_are(app: Conveyor, **expected: int) -> Callable[[], object]:
    async def check() -> bool:
        counts = await app.counts("default")
        return all(counts[JobState(state)] == n for state, n in expected.items())

    return check


@pytest.mark.timeout(60)
async def test_worker_process_runs_jobs_and_exits_zero_on_sigterm(
    app: Conveyor, workers: Workers
) -> None:
    handles = await app.enqueue_many([app.tasks["add"].call(i, 1) for i in range(200)])
    proc = workers.start("--concurrency", "8")
    await eventually(counts_are(app, completed=200), timeout=30)  # type: ignore[arg-type]
    assert [(await app.get_job(h.id)).result for h in handles[:5]] == [1, 2, 3, 4, 5]
    assert len(await app.workers()) == 1
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0
    assert await app.workers() == []


@pytest.mark.timeout(90)
async def test_two_worker_processes_share_one_file_and_run_each_job_once(
    app: Conveyor, workers: Workers
) -> None:
    first = workers.start("--concurrency", "4")
    second = workers.start("--concurrency", "4")
    await app.enqueue_many([app.tasks["nap"].call(0.005) for _ in range(400)])
    await eventually(counts_are(app, completed=400), timeout=60)  # type: ignore[arg-type]
    starts = [e for e in workers.events() if e[0] == "start"]
    assert len(starts) == 400 and len({e[1] for e in starts}) == 400
    assert {e[2] for e in starts} == {str(first.pid), str(second.pid)}
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
        assert await exited(proc) == 0


@pytest.mark.timeout(90)
async def test_killed_workers_job_is_reclaimed_by_another_worker(
    app: Conveyor, workers: Workers
) -> None:
    handle = await app.tasks["nap_first_time"].enqueue(60)
    doomed = workers.start("--lease", "1")

    async def started() -> bool:
        return any(e[0] == "start" for e in workers.events())

    await eventually(started, timeout=20)
    doomed.kill()
    await exited(doomed)
    survivor = workers.start("--lease", "1")
    job = await handle.wait(30)
    assert (job.state, job.stalls, job.result) == ("completed", 1, "done")
    pids = [e[2] for e in workers.events() if e[0] == "start"]
    assert pids == [str(doomed.pid), str(survivor.pid)]
    survivor.send_signal(signal.SIGTERM)
    assert await exited(survivor) == 0


@pytest.mark.timeout(60)
async def test_json_logs_carry_the_jobs_context(app: Conveyor, workers: Workers) -> None:
    handle = await app.tasks["chatty"].enqueue("hello from the job")
    proc = workers.start("--log-format", "json")
    assert (await handle.wait(20)).state == "completed"
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0
    records = [json.loads(line) for line in workers.stderr.read_text().splitlines()]
    (said,) = [r for r in records if r["message"] == "hello from the job"]
    assert said["logger"] == "tests.apps" and said["level"] == "WARNING"
    assert (said["job_id"], said["task"], said["queue"], said["attempt"]) == (
        handle.id,
        "chatty",
        "default",
        1,
    )
    started = next(
        r for r in records if r["message"].startswith("worker ") and "started" in r["message"]
    )
    assert "job_id" not in started  # outside a job: no job fields


@pytest.mark.timeout(60)
async def test_one_worker_process_gives_each_queue_its_own_slots(
    app: Conveyor, workers: Workers
) -> None:
    """``--queues email-sender:5,pdf-processing:2,csv-export:1,thumbnails:4``
    with every queue backlogged: read from the execution log, each queue runs
    exactly its count at once, never more, and one SIGTERM stops them all."""
    queue_of = {}
    for queue, count in SEEDS.items():
        handles = await app.enqueue_many(
            [app.tasks["nap"].configure(queue=queue).call(0.05) for _ in range(count * 5)]
        )
        queue_of.update({h.id: queue for h in handles})
    proc = workers.start("--queues", ",".join(f"{q}:{n}" for q, n in SEEDS.items()))

    async def all_ended() -> bool:
        return sum(event[0] == "end" for event in workers.events()) == len(queue_of)

    await eventually(all_ended, timeout=30)
    log = [
        (float(t), queue_of[job_id], 1 if event == "start" else -1)
        for event, job_id, _, _, t in workers.events()
    ]
    assert most_at_once(log) == SEEDS
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0


@pytest.mark.timeout(90)
async def test_rolling_restart_never_runs_a_sync_job_twice_at_once(
    app: Conveyor, workers: Workers
) -> None:
    """A sync job outliving ``--grace`` keeps its lease: the stopping worker
    exits within its grace (the threads end with it), and the job comes back
    to the next worker only when the lease expires, never beside the first run."""
    handles = await app.enqueue_many([app.tasks["doze"].call(4.0) for _ in range(3)])
    old = workers.start("--concurrency", "3", "--grace", "1", "--lease", "2")

    async def all_started() -> bool:
        return sum(event[0] == "start" for event in workers.events()) == 3

    await eventually(all_started, timeout=20)
    new = workers.start("--concurrency", "3", "--lease", "2")
    await eventually(lambda: _registered(app, 2), timeout=20)
    stopping = time.monotonic()
    old.send_signal(signal.SIGTERM)
    assert await exited(old) == 0
    gone = time.monotonic()
    assert gone - stopping < 2.5  # the grace (1 s) and a moment, not the jobs' 4 s
    for handle in handles:
        job = await handle.wait(30)
        assert (job.state, job.result, job.stalls) == (JobState.COMPLETED, "rested", 1)
    events = workers.events()
    for handle in handles:
        runs = [(e[0], e[2], float(e[4])) for e in events if e[1] == handle.id]
        assert [(kind, pid) for kind, pid, _ in runs] == [
            ("start", str(old.pid)),
            ("start", str(new.pid)),
            ("end", str(new.pid)),
        ]
        assert runs[1][2] > gone  # the second run began after the first ended with its process
    new.send_signal(signal.SIGTERM)
    assert await exited(new) == 0


@pytest.mark.timeout(60)
async def test_sigterm_while_the_worker_starts_exits_zero(workers: Workers) -> None:
    """Before the worker's loop handles signals (here: while the app loads)."""
    proc = workers.start(env={"CONVEYOR_TEST_IMPORT_S": "20"})

    async def importing() -> bool:
        return ["importing"] in workers.events()

    await eventually(importing, timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc, timeout=10) == 0


async def _registered(app: Conveyor, n: int) -> bool:
    return len(await app.workers()) == n


@pytest.mark.timeout(90)
async def test_sigusr1_pauses_a_worker_process_and_sigusr2_resumes_it(
    app: Conveyor, workers: Workers, sqlite_url: str
) -> None:
    proc = workers.start()
    await eventually(lambda: _registered(app, 1), timeout=20)
    proc.send_signal(signal.SIGUSR1)
    await eventually(lambda: _all_paused(app, True), timeout=15)  # at its next heartbeat
    handle = await app.tasks["add"].enqueue(1, 2)
    (info,) = await app.workers()
    await eventually(lambda: _seen_after(app, info.last_seen_ms), timeout=15)
    assert (await app.get_job(handle.id)).state is JobState.WAITING  # a heartbeat later
    proc.send_signal(signal.SIGUSR2)
    assert (await app.wait(handle.id, 10)).result == 3
    # The same through the store, as `conveyor workers pause ID` does.
    (info,) = await app.workers()
    paused = await _workers_cli(sqlite_url, "pause", info.id)
    assert paused.returncode == 0 and f"pausing {info.id}" in paused.stdout
    await eventually(lambda: _all_paused(app, True), timeout=15)
    assert "yes" in (await _workers_cli(sqlite_url, "list")).stdout  # the paused column
    assert (await _workers_cli(sqlite_url, "resume", info.id)).returncode == 0
    await eventually(lambda: _all_paused(app, False), timeout=15)
    missing = await _workers_cli(sqlite_url, "pause", "nope")
    assert missing.returncode == 1 and "no live worker" in missing.stderr
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0


async def _all_paused(app: Conveyor, paused: bool) -> bool:
    found = await app.workers()
    return bool(found) and all(info.paused is paused for info in found)


async def _seen_after(app: Conveyor, last_seen_ms: int) -> bool:
    return any(info.last_seen_ms > last_seen_ms for info in await app.workers())


async def _workers_cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conveyor", "workers", *argv],
        env={**os.environ, "CONVEYOR_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
