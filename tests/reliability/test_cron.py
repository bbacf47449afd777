"""A seconds-level cron fired by three worker processes on one store: one job
per tick, never two, and the expected number of ticks over the run."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

import pytest

from conveyor import Conveyor

from ..processes import Workers, exited

RUN_S = 60.0  # the 60 s: 12 ticks of a 5 s cron, one more or less by phase


@pytest.mark.timeout(150)
async def test_three_workers_fire_a_five_second_cron_once_per_tick(
    app: Conveyor, workers: Workers
) -> None:
    procs = [workers.start("--concurrency", "2") for _ in range(3)]
    schedule = await app.schedules.add("add", cron="*/5 * * * * *", id="every5", args=[1, 2])
    started = time.monotonic()
    await asyncio.sleep(RUN_S)  # the run itself: ticks come by the clock
    await app.schedules.pause("every5")
    for proc in procs:
        proc.terminate()
    for proc in procs:
        assert await exited(proc) == 0
    elapsed = time.monotonic() - started
    runs = Counter(e[1] for e in workers.events() if e[0] == "start")
    ticks = [job_id for job_id in runs if job_id.startswith(f"{schedule.id}@")]
    assert ticks and all(runs[t] == 1 for t in ticks), runs  # never twice for one tick
    assert 11 <= len(ticks) <= 13, (len(ticks), elapsed)
    tick_times = sorted(int(t.split("@")[1]) for t in ticks)
    assert all(t % 5000 == 0 for t in tick_times)  # on the 5 s marks
    assert all(b - a == 5000 for a, b in itertools.pairwise(tick_times))
