"""Job code cannot starve its own lease: a job that blocks the event loop or
spins in pure Python for several lease lengths is never reclaimed while its
worker lives, because leases are renewed from a thread of their own."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, JobState

from ..conftest import eventually
from ..processes import Workers, exited

LEASE_S = 1.0
HOG_S = 4.0  # four lease lengths without the event loop


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["block", "cpu"])
async def test_a_job_that_starves_the_event_loop_keeps_its_lease(
    app: Conveyor, workers: Workers, how: str
) -> None:
    handle = await app.tasks["hog"].enqueue(HOG_S, how)
    worker = workers.start("--lease", str(LEASE_S))
    reclaimed: list[str] = []

    async def finished_while_reclaiming() -> bool:
        # What every other worker does meanwhile: reclaim expired leases.
        result = await app.backend.reclaim_expired(max_stalls=5, limit=100)
        reclaimed.extend(result.requeued + result.failed)
        job = await app.get_job(handle.id)
        return job.state is JobState.COMPLETED

    await eventually(finished_while_reclaiming, timeout=40)
    job = await app.get_job(handle.id)
    assert reclaimed == []
    assert (job.result, job.attempts, job.stalls) == (how, 1, 0)
    assert [e[0] for e in workers.events()] == ["start", "end"]
    worker.terminate()
    assert await exited(worker) == 0
