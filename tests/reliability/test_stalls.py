"""Stalls, with real worker processes: a killed worker's job comes back within
the lease plus two stall checks, a CPU-bound job is never redelivered while
its worker lives, and a job that kills every worker that runs it fails as
``stalled`` after ``max_stalls`` instead of looping forever."""

from __future__ import annotations

import os
import time

import pytest

from conveyor import Conveyor, JobState
from conveyor.backends.base import stalled_message

from ..conftest import eventually
from ..processes import Workers, exited

LEASE_S = 2.0
CHECK_S = 0.5  # CONVEYOR_RECLAIM_INTERVAL of the workers here
FULL = os.environ.get("CONVEYOR_CHAOS") == "full"


@pytest.fixture(autouse=True)
def _fast_stall_checks(workers: Workers) -> None:
    workers.env["CONVEYOR_RECLAIM_INTERVAL"] = str(CHECK_S)


def starts(workers: Workers) -> list[str]:
    """The pid of every start in the execution log, in order."""
    return [e[2] for e in workers.events() if e[0] == "start"]


@pytest.mark.timeout(60)
async def test_a_killed_workers_job_is_back_within_the_lease_and_two_checks(
    app: Conveyor, workers: Workers
) -> None:
    handle = await app.tasks["nap"].enqueue(60)
    doomed = workers.start("--lease", str(LEASE_S))
    survivor = workers.start("--lease", str(LEASE_S))

    async def started_once() -> bool:
        return len(starts(workers)) == 1

    await eventually(started_once, timeout=20)
    victim = next(p for p in (doomed, survivor) if str(p.pid) == starts(workers)[0])
    victim.kill()
    killed_at = time.monotonic()
    await exited(victim)

    async def restarted() -> bool:
        return len(starts(workers)) == 2

    await eventually(restarted, timeout=LEASE_S + 2 * CHECK_S + 10)
    back_after = time.monotonic() - killed_at
    # The lease ran from the last renewal, before the kill; one check notes
    # it expired, the next reclaims it; then a claim and the start.
    assert back_after <= LEASE_S + 2 * CHECK_S + 1.5, back_after
    job = await app.get_job(handle.id)
    assert (job.state, job.stalls, job.attempts) == (JobState.ACTIVE, 1, 1)
    assert [e.message for e in await app.get_logs(handle.id)] == [stalled_message(1, 1)]
    assert set(starts(workers)) == {str(doomed.pid), str(survivor.pid)}


@pytest.mark.timeout(90)
async def test_a_cpu_bound_job_is_never_redelivered_while_its_worker_lives(
    app: Conveyor, workers: Workers
) -> None:
    seconds = 20.0 if FULL else 5.0  # the 20 s in full mode
    handle = await app.tasks["hog"].enqueue(seconds, "cpu")
    for _ in range(2):  # the other one checks for stalls all along
        workers.start("--lease", str(LEASE_S))
    job = await handle.wait(seconds + 30)
    assert (job.state, job.result, job.stalls, job.attempts) == ("completed", "cpu", 0, 1)
    assert [e[0] for e in workers.events()] == ["start", "end"]


@pytest.mark.timeout(90)
async def test_a_poison_pill_fails_as_stalled_after_max_stalls(
    app: Conveyor, workers: Workers
) -> None:
    handle = await app.tasks["poison"].enqueue()
    live = [workers.start("--lease", str(LEASE_S)) for _ in range(2)]

    async def failed_while_two_workers_run() -> bool:
        for i, proc in enumerate(live):
            if proc.poll() is not None:  # the pill killed it: replace it
                live[i] = workers.start("--lease", str(LEASE_S))
        return (await app.get_job(handle.id)).state == JobState.FAILED

    await eventually(failed_while_two_workers_run, timeout=60)
    job = await app.get_job(handle.id)
    assert (job.error, job.stalls) == ("stalled", 2)
    runs = starts(workers)
    assert len(runs) == 2 and runs[0] != runs[1]  # max_stalls 1: two runs, two deaths
    assert [e.message for e in await app.get_logs(handle.id)] == [
        stalled_message(1, 1),
        stalled_message(2, 1),
    ]
