"""How idle workers wait: they wake for work they may start (an enqueue by
another process, a limit that frees), and not for commits that change
nothing they could claim."""

from __future__ import annotations

import asyncio
import time

from conveyor import Conveyor, JobState

from ..conftest import StartWorker
from .conftest import claim, count_claims


async def test_busy_groups_at_their_limit_do_not_wake_an_idle_worker(
    app: Conveyor, start_worker: StartWorker, store_url: str
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.set_limits("default", group="*", max_active=1)
    await app.enqueue_many([work.configure(group="g").call(i) for i in range(5)])
    held = await claim(app, limit=1, worker="elsewhere")  # g is at its limit from now on
    assert len(held) == 1
    claims = count_claims(app)
    await start_worker(concurrency=2)
    async with Conveyor(store_url) as other:  # another process's commits, for nothing here
        busy = other.task(name="busy")(work.fn)
        began = time.monotonic()
        while time.monotonic() - began < 2.0:
            await busy.configure(queue="elsewhere").enqueue(1)
            await asyncio.sleep(0.01)
    assert claims[0] <= 20, claims[0]  # about 200 commits; a claim each would be a poll
    assert (await app.counts("default"))[JobState.WAITING] == 4


async def test_each_set_of_queues_waits_on_what_its_own_last_claim_saw(
    app: Conveyor, store_url: str
) -> None:
    """Workers of one app share its backend: a claim of other queues in
    between must not make a wait miss a job its own claim could not see."""

    @app.task
    async def work(n: int) -> None: ...

    assert await claim(app, ["a"]) == []
    async with Conveyor(store_url) as producer:  # another process
        remote = producer.task(name="work")(work.fn)
        await remote.configure(queue="a").enqueue(1)
    assert await claim(app, ["b"]) == []  # another worker of this app, other queues
    began = time.monotonic()
    await app.backend.wait_for_jobs(queues=["a"], timeout_s=3.0)
    assert time.monotonic() - began < 1.5


async def test_a_wait_with_nothing_to_wake_it_lasts_until_its_timeout(app: Conveyor) -> None:
    """The lower bound of the tests above: with nothing enqueued, delayed or
    held, a wait does not return at once (a worker would spin)."""
    assert await claim(app, ["quiet"]) == []
    began = time.monotonic()
    assert await app.backend.wait_for_jobs(queues=["quiet"], timeout_s=0.6) == []
    assert 0.5 <= time.monotonic() - began < 2.0
