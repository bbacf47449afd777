"""Graceful shutdown of real worker processes, on both stores, read from the
execution log: after the first signal no job starts, running jobs get the
grace period, what still runs at its end goes back to ``waiting`` without
counting a stall, and the process exits 0; a second signal exits at once."""

from __future__ import annotations

import signal

import pytest

from conveyor import Conveyor, JobState

from ..conftest import eventually
from ..processes import Workers, exited


@pytest.mark.timeout(60)
async def test_sigterm_lets_the_running_job_finish_and_starts_no_other(
    app: Conveyor, workers: Workers
) -> None:
    handles = await app.enqueue_many([app.tasks["nap"].call(1.0) for _ in range(3)])
    proc = workers.start("--concurrency", "1")

    async def one_started() -> bool:
        return len(workers.events()) >= 1

    await eventually(one_started, timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0
    states = [(await app.get_job(h.id)).state for h in handles]
    assert sorted(states) == ["completed", "waiting", "waiting"]
    assert [e[0] for e in workers.events()] == ["start", "end"]


@pytest.mark.timeout(60)
async def test_second_signal_exits_at_once(app: Conveyor, workers: Workers) -> None:
    handle = await app.tasks["nap"].enqueue(30)
    proc = workers.start("--concurrency", "1")
    await eventually(lambda: _active(app, handle.id), timeout=20)
    proc.send_signal(signal.SIGINT)

    async def stopping() -> bool:  # the same signal twice at once would arrive as one
        return "stopping" in workers.stderr.read_text()

    await eventually(stopping, timeout=10)
    proc.send_signal(signal.SIGINT)
    assert await exited(proc, timeout=5) == 128 + signal.SIGINT
    assert (await app.get_job(handle.id)).state == "active"  # its lease brings it back


async def _active(app: Conveyor, job_id: str) -> bool:
    return (await app.get_job(job_id)).state == "active"


@pytest.mark.timeout(60)
async def test_jobs_still_running_at_the_grace_deadline_go_back_to_waiting(
    app: Conveyor, workers: Workers
) -> None:
    handles = await app.enqueue_many([app.tasks["nap"].call(30) for _ in range(2)])
    proc = workers.start("--concurrency", "2", "--grace", "1")

    async def both_started() -> bool:
        return len(workers.events()) == 2

    await eventually(both_started, timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert await exited(proc, timeout=10) == 0
    for handle in handles:
        job = await app.get_job(handle.id)
        # Released, not reclaimed: no stall, and the attempt given back.
        assert (job.state, job.stalls, job.attempts) == (JobState.WAITING, 0, 0)
    assert [e[0] for e in workers.events()] == ["start", "start"]  # none ended, none began
