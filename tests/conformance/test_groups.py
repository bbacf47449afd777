"""Groups (tenants): in a queue with groups, claims serve the groups with
waiting jobs in turn, so a big backlog cannot starve a small one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from conveyor import Conveyor, JobState, Retention, Task

from ..conftest import StartWorker, eventually
from .conftest import claim


def _work(app: Conveyor) -> Task[[int], Any]:
    @app.task(keep_completed=Retention())
    async def work(n: int) -> None: ...

    return work


async def test_claims_take_turns_across_groups(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.configure(group="a").call(i) for i in range(6)])
    await app.enqueue_many([work.configure(group="b").call(i) for i in range(2)])
    order = [c.job.group for _ in range(8) for c in await claim(app, limit=1)]
    assert order == ["a", "b", "a", "b", "a", "a", "a", "a"]


async def test_one_claim_serves_groups_round_robin_in_fifo_order(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.configure(group="a").call(i) for i in range(5)])
    await app.enqueue_many([work.configure(group="b").call(i) for i in range(2)])
    claimed = await claim(app, limit=5)
    assert [(c.job.group, c.job.args["n"]) for c in claimed] == [
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("b", 1),
        ("a", 2),
    ]
    # The next claim starts with whoever was served longest ago.
    assert [c.job.args["n"] for c in await claim(app, limit=5)] == [3, 4]


async def test_jobs_without_a_group_share_one_turn(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.call(i) for i in range(4)])
    await app.enqueue_many([work.configure(group="a").call(i) for i in range(4)])
    claimed = await claim(app, limit=4)
    assert sorted(str(c.job.group) for c in claimed) == ["None", "None", "a", "a"]
    assert [c.job.group for c in claimed][::2] == [claimed[0].job.group] * 2  # alternating


async def test_priority_orders_jobs_within_a_group(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.configure(group="a").call(0)])
    await app.enqueue_many([work.configure(group="a", priority=5).call(1)])
    claimed = await claim(app, limit=2)
    assert [c.job.args["n"] for c in claimed] == [1, 0]
    assert all(c.job.group == "a" for c in claimed)


async def test_counts_and_listing_include_grouped_jobs(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.configure(group="a").call(i) for i in range(3)])
    await app.enqueue_many([work.configure(priority=1).call(9)])
    assert (await app.counts("default"))[JobState.WAITING] == 4
    listed = await app.list_jobs("waiting")
    assert [job.args["n"] for job in listed] == [9, 0, 1, 2]
    assert [job.args["n"] for job in await app.list_jobs("waiting", offset=1, limit=2)] == [0, 1]
    assert len(await claim(app, limit=1)) == 1
    assert await app.cancel(listed[3].id)  # waiting: the claim took 9 or a's first
    assert (await app.counts("default"))[JobState.WAITING] == 2


async def test_a_small_group_is_not_starved_by_a_big_backlog(
    app: Conveyor, start_worker: StartWorker
) -> None:
    """Group A enqueues 10,000 jobs, then group B enqueues 10. The rotation
    promises that B's k-th job starts after at most k jobs of A (one per
    round, A being the only other group) plus the claims already under way
    (at most 2 x concurrency: a worker claims again while outcomes are being
    written). With concurrency 10 that is 10 + 20 = 30 jobs of A, far under
    1 % of A's backlog (100)."""
    starts: list[str] = []

    @app.task(keep_completed=Retention(max_count=0))
    async def tenant_job(tenant: str) -> None:
        starts.append(tenant)
        await asyncio.sleep(0)

    await app.enqueue_many([tenant_job.configure(group="a").call("a") for _ in range(10_000)])
    await start_worker(concurrency=10)

    async def a_running() -> bool:
        return len(starts) >= 200

    await eventually(a_running, timeout=30)
    a_before = len(starts)
    await app.enqueue_many([tenant_job.configure(group="b").call("b") for _ in range(10)])
    began = time.monotonic()

    async def b_done() -> bool:
        return starts.count("b") == 10

    await eventually(b_done, timeout=30)
    last_b = len(starts) - 1 - starts[::-1].index("b")
    a_meanwhile = starts[a_before : last_b + 1].count("a")
    assert a_meanwhile <= 10 + 2 * 10, (a_meanwhile, time.monotonic() - began)


async def test_a_group_refilled_one_job_at_a_time_cannot_starve_a_backlog(
    app: Conveyor,
) -> None:
    """A group that gets a job after having none joins the rotation at the back."""
    work = _work(app)
    await app.enqueue_many([work.configure(group="b").call(i) for i in range(20)])
    order = []
    for _ in range(10):
        await app.enqueue_many([work.configure(group="a").call(0)])  # a: one job at a time
        order += [c.job.group for c in await claim(app, limit=1)]
    assert order.count("b") >= 4, order


async def test_grouped_jobs_replaced_by_a_debounce_are_counted_once(app: Conveyor) -> None:
    work = _work(app)
    calls = [work.configure(group="g", dedup_key="k", debounce=0.01).call(i) for i in range(3)]
    await app.enqueue_many(calls)
    app.clock.advance(1)
    claimed = await claim(app, limit=10)
    assert [c.job.args["n"] for c in claimed] == [2]
    assert (await app.counts("default"))[JobState.WAITING] == 0
