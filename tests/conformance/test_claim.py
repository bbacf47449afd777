"""Claiming: priority, then the order jobs became ready (FIFO), LIFO on request,
queues, pause and resume."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, JobState

from .conftest import claim


async def test_claims_follow_priority_then_fifo(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    for n, priority in enumerate([0, 5, -3, 5, 10, 0]):
        await work.configure(priority=priority).enqueue(n)
    claimed = await claim(app, limit=10)
    assert [c.job.args["n"] for c in claimed] == [4, 1, 3, 0, 5, 2]


async def test_jobs_that_fell_due_run_in_the_order_they_fell_due(app: Conveyor) -> None:
    """Among equal priorities, jobs run in the order they became ready: a job
    enqueued without delay when it was enqueued, a delayed one when it fell
    due (not in enqueue order), then by enqueue order."""

    @app.task
    async def work(n: str) -> None: ...

    for name, delay in (("a", 0.9), ("b", 0.6), ("c", 0.3), ("d", 0.3)):
        await work.configure(delay=delay).enqueue(name)
    await work.enqueue("now")  # ready before any of them
    app.clock.advance(1.0)
    await work.enqueue("later")  # ready after all of them
    claimed = await claim(app, limit=10)
    assert [c.job.args["n"] for c in claimed] == ["now", "c", "d", "b", "a", "later"]


async def test_a_promoted_job_goes_behind_the_jobs_ready_before_it(app: Conveyor) -> None:
    @app.task
    async def work(n: str) -> None: ...

    early = await work.configure(delay=600).enqueue("promoted")
    await work.enqueue("waiting")
    app.clock.advance(0.01)  # ready at least a ms later than the waiting one
    assert await app.promote(early.id)
    claimed = await claim(app, limit=10)
    assert [c.job.args["n"] for c in claimed] == ["waiting", "promoted"]


async def test_claim_takes_at_most_limit_and_leaves_the_rest(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(5)])
    first = await claim(app, limit=2)
    second = await claim(app, limit=10)
    assert [c.job.args["n"] for c in first] == [0, 1]
    assert [c.job.args["n"] for c in second] == [2, 3, 4]
    assert await claim(app) == []
    counts = await app.counts("default")
    assert counts[JobState.ACTIVE] == 5 and counts[JobState.WAITING] == 0


async def test_lifo_jobs_run_newest_first_within_their_priority(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await work.enqueue(0)
    await work.configure(lifo=True).enqueue(1)
    await work.configure(lifo=True).enqueue(2)
    await work.configure(priority=1).enqueue(3)
    claimed = await claim(app, limit=10)
    assert [c.job.args["n"] for c in claimed] == [3, 2, 1, 0]


async def test_claim_marks_job_active_with_lease_and_attempt(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app, worker="worker-7", lease_ms=10_000)
    job = await app.get_job(handle.id)
    assert job.state == "active" and job.attempts == 1 and job.worker_id == "worker-7"
    assert job.started_at is not None
    now = app.clock.now_ms()
    assert now < claimed.lease_expires_ms <= now + 10_000
    assert claimed.token


async def test_claims_only_from_named_queues_across_several(app: Conveyor) -> None:
    @app.task(queue="a")
    async def in_a(n: int) -> None: ...

    @app.task(queue="b")
    async def in_b(n: int) -> None: ...

    await in_a.enqueue(1)
    await in_b.configure(priority=5).enqueue(2)
    await in_a.configure(queue="c").enqueue(3)
    claimed = await claim(app, ["a", "b"], limit=10)
    assert [c.job.args["n"] for c in claimed] == [2, 1]  # priority across queues
    assert [c.job.queue for c in await claim(app, ["c"])] == ["c"]


async def test_paused_queue_keeps_jobs_waiting_until_resumed(app: Conveyor) -> None:
    @app.task(queue="mail")
    async def send() -> None: ...

    await send.enqueue()
    await app.pause("mail")
    assert await claim(app, ["mail"]) == []
    (info,) = [q for q in await app.queues() if q.name == "mail"]
    assert info.paused and info.counts[JobState.WAITING] == 1
    await app.resume("mail")
    assert len(await claim(app, ["mail"])) == 1


async def test_pausing_one_queue_leaves_others_claimable(app: Conveyor) -> None:
    @app.task(queue="a")
    async def work(n: int) -> None: ...

    await work.enqueue(1)
    await work.configure(queue="b").enqueue(2)
    await app.pause("a")
    assert [c.job.args["n"] for c in await claim(app, ["a", "b"])] == [2]


async def test_waiting_for_jobs_returns_at_once_when_one_is_ready(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    await work.enqueue()  # ready before the wait starts: the wake-up must not be lost
    loop = asyncio.get_running_loop()
    started = loop.time()
    await app.backend.wait_for_jobs(queues=["default"], timeout_s=5)
    assert loop.time() - started < 1.0
    assert len(await claim(app)) == 1
