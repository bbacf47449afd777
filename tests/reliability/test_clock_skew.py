"""Redis only: worker processes whose clocks are off by -300 s, 0 and +300 s
(``CONVEYOR_TEST_CLOCK_SKEW_MS``) run a cron, a rate limit, a global
concurrency limit, a delayed job and leases exactly as in-step clocks would,
because the server's clock decides all of them. (On SQLite the host's clock
is the store's: every process shares it, so there is nothing to skew.)"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict

import pytest

from conveyor import Conveyor, JobState
from conveyor.clock import SKEW_ENV

from ..conftest import eventually
from ..processes import Workers, exited
from .test_rate_limit import busiest_second

FULL = os.environ.get("CONVEYOR_CHAOS") == "full"
RUN_S = 60.0 if FULL else 20.0
SKEWS_MS = (-300_000, 0, 300_000)


STORES = ("redis",)  # a store's clock that workers' clocks cannot move


@pytest.mark.timeout(150)
async def test_skewed_worker_clocks_change_nothing_on_redis(
    app: Conveyor, workers: Workers
) -> None:
    nap, add = app.tasks["nap"], app.tasks["add"]
    await app.set_limits("limited", rate="50/s")
    await app.set_limits("capped", max_active=3)
    limited = await app.enqueue_many(
        [nap.configure(queue="limited").call(0.01) for _ in range(300)]
    )
    capped = await app.enqueue_many([nap.configure(queue="capped").call(0.2) for _ in range(30)])
    delayed_at = time.monotonic()
    delayed = await add.configure(delay=3).enqueue(1, 2)
    procs = [
        workers.start(
            "--queues", "default,limited,capped", "--concurrency", "4", env={SKEW_ENV: str(skew)}
        )
        for skew in SKEWS_MS
    ]
    schedule = await app.schedules.add("add", cron="*/5 * * * * *", id="every5", args=[1, 2])
    began = time.monotonic()

    async def all_seen() -> bool:
        return len(await app.workers()) == len(SKEWS_MS)

    await eventually(all_seen, timeout=15)  # heartbeats are stamped by the server's clock

    async def limited_and_capped_done() -> bool:
        counts = [await app.counts(q) for q in ("limited", "capped")]
        return [c[JobState.COMPLETED] for c in counts] == [len(limited), len(capped)]

    await eventually(limited_and_capped_done, timeout=60)
    await asyncio.sleep(max(0.0, RUN_S - (time.monotonic() - began)))
    await app.schedules.pause("every5")
    elapsed = time.monotonic() - began
    for proc in procs:
        proc.terminate()
    for proc in procs:
        assert await exited(proc) == 0

    events = workers.events()
    runs: dict[str, list[float]] = defaultdict(list)
    for kind, job_id, _, _, at in events:
        if kind == "start":
            runs[job_id].append(float(at))
    assert all(len(times) == 1 for times in runs.values()), "a lease was judged expired"

    limited_ids = {h.id for h in limited}
    assert busiest_second([runs[i][0] for i in limited_ids]) <= 51

    capped_ids = {h.id for h in capped}
    running = most = 0
    for kind, job_id, *_ in events:
        if job_id in capped_ids:
            running += 1 if kind == "start" else -1
            most = max(most, running)
    assert most == 3

    waited = runs[delayed.id][0] - delayed_at
    assert 3.0 <= waited < 10.0, waited  # not early (+300 s) nor 300 s late (-300 s)

    ticks = sorted(int(i.split("@")[1]) for i in runs if i.startswith(f"{schedule.id}@"))
    assert abs(len(ticks) - elapsed / 5) <= 1.5, (len(ticks), elapsed)
    assert all(t % 5000 == 0 for t in ticks)
    assert all(b - a == 5000 for a, b in itertools.pairwise(ticks))
