"""Global concurrency across worker processes, read from the execution log
(its lines are in the order they happened: one appending write each)."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, JobState

from ..conftest import eventually
from ..processes import Workers, exited


@pytest.mark.timeout(90)
async def test_a_queue_limit_of_three_holds_across_four_workers(
    app: Conveyor, workers: Workers
) -> None:
    await app.set_limits("default", max_active=3)
    handles = await app.enqueue_many([app.tasks["nap"].call(0.2) for _ in range(30)])
    procs = [workers.start("--concurrency", "4") for _ in range(4)]

    async def all_done() -> bool:
        return (await app.counts("default"))[JobState.COMPLETED] == len(handles)

    await eventually(all_done, timeout=60)
    running = most = 0
    for event, *_ in workers.events():
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert most == 3  # reached, never passed
    for proc in procs:
        proc.terminate()
    for proc in procs:
        assert await exited(proc) == 0
