"""Draining and obliterating a queue, and cleaning waiting and delayed jobs:
in bounded batches, each atomic, racing claims and enqueues."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, JobNotFound, JobState, QueueBusy, Retention
from conveyor.flow import flow

from ..conftest import store_digest
from .conftest import claim

KEEP = Retention()


async def _states(app: Conveyor, ids: list[str]) -> dict[str, JobState | None]:
    found: dict[str, JobState | None] = {}
    for job_id in ids:
        try:
            found[job_id] = (await app.get_job(job_id)).state
        except JobNotFound:
            found[job_id] = None
    return found


async def test_drain_removes_waiting_jobs_and_with_delayed_the_delayed(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    running = await work.enqueue(0)
    (claimed,) = await claim(app, limit=1)
    waiting = [await work.enqueue(n) for n in range(3)]
    grouped = await work.configure(group="g").enqueue(9)
    later = await work.configure(delay=60).enqueue(5)
    done = await work.enqueue(6)
    other = await work.configure(queue="other").enqueue(7)
    (finishing,) = await claim(app, limit=1)  # the first of the waiting three
    assert finishing.job.id == waiting[0].id
    await app.backend.complete(
        job_id=waiting[0].id, token=finishing.token, result=b"1", retention=KEEP
    )
    start = await app.backend.last_event_id()
    assert await app.drain("default") == 4  # two plain waiting, one grouped, `done`
    counts = await app.counts("default")
    assert (counts[JobState.WAITING], counts[JobState.DELAYED]) == (0, 1)
    assert counts[JobState.ACTIVE] == 1 and counts[JobState.COMPLETED] == 1
    removed = [
        e.job_id
        for e in (await app.backend.read_events(after=start, limit=100)).events
        if e.kind.value == "removed"
    ]
    assert sorted(removed) == sorted([waiting[1].id, waiting[2].id, grouped.id, done.id])
    assert await app.drain("default", delayed=True) == 1
    assert (await _states(app, [later.id]))[later.id] is None
    assert (await app.get_job(running.id)).state is JobState.ACTIVE
    assert await app.backend.complete(
        job_id=running.id, token=claimed.token, result=b"2", retention=KEEP
    )
    assert (await app.get_job(other.id)).state is JobState.WAITING
    assert await claim(app) == []  # nothing of the drained queue is left to claim


async def test_drain_while_workers_claim_leaves_no_job_both_gone_and_running(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = [await work.enqueue(n) for n in range(300)]

    async def claims() -> set[str]:
        got: set[str] = set()
        for _ in range(10):
            got |= {c.job.id for c in await claim(app, limit=7)}
        return got

    claimed, drained = await asyncio.gather(claims(), app.drain("default"))
    states = await _states(app, [h.id for h in handles])
    for job_id, state in states.items():
        assert (state is JobState.ACTIVE) == (job_id in claimed)
        assert state in (None, JobState.ACTIVE)
    assert drained == sum(state is None for state in states.values())
    counts = await app.counts("default")
    assert counts[JobState.ACTIVE] == len(claimed) and counts[JobState.WAITING] == 0


async def test_obliterate_refuses_while_jobs_run_unless_forced(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.set_limits("default", max_active=5)
    handles = [await work.enqueue(n) for n in range(4)]
    await work.configure(delay=30).enqueue(9)
    (running,) = await claim(app, limit=1)
    before = None if "cluster" in app.url else store_digest(app.url)
    with pytest.raises(QueueBusy) as busy:
        await app.obliterate("default")
    assert busy.value.active == 1 and "force" in str(busy.value)
    if before is not None:
        assert store_digest(app.url) == before
    info = {q.name: q for q in await app.queues()}["default"]
    assert not info.paused and info.counts[JobState.WAITING] == 3  # nothing changed
    assert await app.obliterate("default", force=True) == 5
    assert "default" not in {q.name for q in await app.queues()}
    assert await app.limits("default") == {}
    assert await _states(app, [h.id for h in handles]) == dict.fromkeys(
        [h.id for h in handles], None
    )
    assert not await app.backend.complete(  # its worker's lease is gone with it
        job_id=running.job.id, token=running.token, result=b"1", retention=KEEP
    )
    assert await app.obliterate("default") == 0  # no such queue now
    again = await work.enqueue(10)  # the name is free: a new, unpaused queue
    assert [c.job.id for c in await claim(app)] == [again.id]


async def test_obliterate_removes_every_state_and_tells_a_flows_parent(app: Conveyor) -> None:
    @app.task(queue="doomed")
    async def child() -> None: ...

    @app.task(queue="kept")
    async def parent() -> None: ...

    root = await app.add_flow(flow(parent.call(), [flow(child.call(), on_failure="ignore")]))
    done = await child.enqueue()
    (c1, c2) = await claim(app, ["doomed"], limit=2)
    finished = c1 if c1.job.id == done.id else c2
    await app.backend.complete(job_id=done.id, token=finished.token, result=b"1", retention=KEEP)
    await app.backend.release(
        job_id=(c2 if finished is c1 else c1).job.id,
        token=(c2 if finished is c1 else c1).token,
        block_ms=None,
        block_group=False,
    )
    assert await app.obliterate("doomed") == 2
    assert "doomed" not in {q.name for q in await app.queues()}
    parent_job = await app.get_job(root.id)  # its child was removed unfinished: it runs
    assert parent_job.state is JobState.WAITING


async def test_obliterate_racing_enqueues_and_claims_leaves_nothing_half_removed(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(n) for n in range(600)])

    async def enqueues() -> list[str]:
        made = []
        for n in range(20):
            made.append((await work.enqueue(1000 + n)).id)
        return made

    async def claims() -> set[str]:
        got: set[str] = set()
        for _ in range(5):
            got |= {c.job.id for c in await claim(app, limit=3)}
        return got

    results = await asyncio.gather(
        claims(), enqueues(), app.obliterate("default", force=True), return_exceptions=True
    )
    claimed, made, removed = results
    assert isinstance(claimed, set) and isinstance(made, list) and isinstance(removed, int)
    left = [job_id for job_id, state in (await _states(app, made)).items() if state]
    queue = {q.name: q for q in await app.queues()}.get("default")
    if left:  # enqueued after the queue was forgotten: a whole new queue
        assert queue is not None and queue.counts[JobState.WAITING] == len(left)
        assert sum(queue.counts.values()) == len(left)
    else:
        assert queue is None
    jobs = await app.list_jobs("waiting", limit=1000)
    assert sorted(job.id for job in jobs) == sorted(left)
    for job_id in claimed:  # a claimed job is gone with its lease, or never was claimed
        with pytest.raises(JobNotFound):
            await app.get_job(job_id)


async def test_clean_waiting_and_delayed_by_age_sparing_the_newest(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    old = []
    for n in range(4):
        old.append(await work.enqueue(n))
        app.clock.advance(10)
    fresh = await work.enqueue(9)
    later = [await work.configure(delay=600).enqueue(n) for n in range(2)]
    # enqueued 40, 30, 20, 10 and 0 seconds ago: keep the newest 2, older than 25 s go
    assert await app.clean("waiting", older_than=25, keep=2) == 2
    assert await app.clean("waiting", older_than=5, keep=4) == 0  # the newest 4 are spared
    states = await _states(app, [h.id for h in [*old, fresh]])
    assert [states[h.id] for h in old] == [None, None, JobState.WAITING, JobState.WAITING]
    assert states[fresh.id] is JobState.WAITING
    assert await app.clean("delayed", older_than=0) == 2
    assert all(state is None for state in (await _states(app, [h.id for h in later])).values())
    order = [c.job.id for c in await claim(app, limit=5)]
    assert order == [old[2].id, old[3].id, fresh.id]


async def test_drain_and_obliterate_of_no_such_queue_change_nothing(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await work.enqueue(1)
    assert await app.drain("nothing-here") == 0
    assert await app.obliterate("nothing-here") == 0
    assert [q.name for q in await app.queues()] == ["default"]
