"""Redis-only: an enqueue hands its job to an idle wait, claimed for the
waiting worker in the same script, so the worker starts it without a claim's
round trip (``enqueue-3.lua``). What must hold: a handed job is claimed as a
claim would (one attempt, the taker's lease), never handed past a limit or a
pause, never to a wait that ended, and one handed to a worker that died
comes back when its lease expires."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, JobState, Worker, WorkerSettings
from conveyor.backends.redis.keys import Keys
from conveyor.backends.values import ClaimedJob, QueueSlots, Taker

from ..conftest import eventually
from ..redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys()


@pytest.fixture
async def app(server: RedisServer) -> AsyncIterator[Conveyor]:
    app = Conveyor(server.url)

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        yield app


def idle_waits(server: RedisServer, queue: str) -> int:
    return int(redis.Redis.from_url(server.url).zcard(KEYS.queue(queue, "idle")))


async def registered_wait(
    app: Conveyor, server: RedisServer, queues: tuple[str, ...], lease_ms: int = 30_000
) -> asyncio.Task[list[ClaimedJob]]:
    """A wait of worker w1 on ``queues``, once it stands in their idle sets."""
    waiting = asyncio.create_task(
        app.backend.wait_for_jobs(queues=queues, timeout_s=5.0, taker=Taker("w1", lease_ms, queues))
    )

    async def registered() -> bool:
        return all(idle_waits(server, queue) == 1 for queue in queues)

    await eventually(registered)
    return waiting


async def test_an_idle_wait_is_handed_the_job_claimed_for_its_worker(
    app: Conveyor, server: RedisServer
) -> None:
    waiting = await registered_wait(app, server, ("default",), lease_ms=20_000)
    handle = await app.tasks["work"].enqueue(7)
    (handed,) = await asyncio.wait_for(waiting, 5)
    assert handed.job.id == handle.id
    assert handed.payload == b'{"n":7}'
    job = await handle.get()
    assert (job.state, job.attempts, job.worker_id) == (JobState.ACTIVE, 1, "w1")
    assert job.state == handed.job.state
    assert 19_000 < handed.lease_expires_ms - job.started_at.timestamp() * 1000 <= 20_000
    assert idle_waits(server, "default") == 0
    assert await app.backend.complete(
        job_id=handle.id,
        token=handed.token,
        result=b"7",
        retention=handed.job.options.keep_completed,
    )  # the token handed over is the lease's


async def test_a_cancelled_wait_is_handed_nothing(app: Conveyor, server: RedisServer) -> None:
    waiting = await registered_wait(app, server, ("default",))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert idle_waits(server, "default") == 0
    handle = await app.tasks["work"].enqueue(1)
    assert (await handle.get()).state == JobState.WAITING


@pytest.mark.parametrize("held", ["paused", "max_active", "rate"])
async def test_a_held_queue_wakes_the_wait_without_handing_it_a_job(
    app: Conveyor, server: RedisServer, held: str
) -> None:
    if held == "paused":
        await app.pause("default")
    elif held == "max_active":
        await app.set_limits("default", max_active=5)
    else:
        await app.set_limits("default", rate="100/s")
    await app.backend.wait_for_jobs(queues=["default"], timeout_s=0.2)  # the change's own wake
    waiting = await registered_wait(app, server, ("default",))
    handle = await app.tasks["work"].enqueue(1)
    assert await asyncio.wait_for(waiting, 5) == []  # woken, to look for itself
    assert (await handle.get()).state == JobState.WAITING
    assert idle_waits(server, "default") == 0


async def test_a_wait_on_two_queues_leaves_both_and_its_next_claim_runs_what_it_holds(
    app: Conveyor, server: RedisServer
) -> None:
    work = app.tasks["work"]
    waiting = await registered_wait(app, server, ("a", "b"))
    first = await work.configure(queue="a").enqueue(1)
    second = await work.configure(queue="b").enqueue(2)  # handed too, or left waiting
    (handed,) = await asyncio.wait_for(waiting, 5)
    assert handed.job.id == first.id
    slots = [QueueSlots(("a", "b"), 2)]
    claimed = await app.backend.claim(slots=slots, worker_id="w1", lease_ms=30_000)
    assert [c.job.id for c in claimed] == [second.id]
    assert (await second.get()).attempts == 1
    assert idle_waits(server, "a") == idle_waits(server, "b") == 0


async def test_jobs_handed_one_by_one_to_an_idle_worker_each_run_once(app: Conveyor) -> None:
    worker = Worker(app, WorkerSettings(concurrency=2))
    running = asyncio.create_task(worker.run())
    try:
        for n in range(20):
            handle = await app.tasks["work"].enqueue(n)
            job = await handle.wait(10)
            assert (job.state, job.result, job.attempts) == (JobState.COMPLETED, n, 1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
    assert worker.processed == 20


DIES_WAITING = """
import asyncio, os, sys
from conveyor import Conveyor
from conveyor.backends.values import Taker

async def main() -> None:
    app = Conveyor(sys.argv[1])
    async with app:
        waiting = asyncio.ensure_future(app.backend.wait_for_jobs(
            queues=["default"], timeout_s=5.0, taker=Taker("dead", 500, ("default",))))
        await asyncio.sleep(0.3)
        print("registered", flush=True)
        sys.stdin.readline()
        os._exit(9)

asyncio.run(main())
"""


async def test_a_job_handed_to_a_worker_that_died_comes_back_after_its_lease(
    app: Conveyor, server: RedisServer
) -> None:
    dying = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DIES_WAITING,
        server.url,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert dying.stdout is not None and dying.stdin is not None
        assert (await asyncio.wait_for(dying.stdout.readline(), 10)).strip() == b"registered"
        dying.stdin.write(b"\n")
        assert await asyncio.wait_for(dying.wait(), 10) == 9
    finally:
        if dying.returncode is None:
            dying.kill()
            await dying.wait()
    handle = await app.tasks["work"].enqueue(3)  # its registration stands a second more
    assert (await handle.get()).worker_id == "dead"
    worker = Worker(app, WorkerSettings(concurrency=2, reclaim_interval_s=0.2))
    running = asyncio.create_task(worker.run())
    try:
        job = await handle.wait(10)
        assert (job.state, job.result, job.stalls) == (JobState.COMPLETED, 3, 1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)
