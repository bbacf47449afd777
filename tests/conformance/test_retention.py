"""Retention: what ``trim_finished`` deletes, and that a worker keeps every
task at its retention at a flat cost (``conveyor.worker.trimming``)."""

from __future__ import annotations

import asyncio

import msgspec

from conveyor import Conveyor, JobState, Retention
from conveyor.backends.values import ProgressUpdate

from ..conftest import StartWorker, eventually
from .conftest import claim


async def _finish(app: Conveyor, n: int, *, keep: Retention, fail: bool = False) -> list[str]:
    ids = []
    for _ in range(n):
        (claimed,) = await claim(app, limit=1)
        ids.append(claimed.job.id)
        await app.backend.report_progress(
            job_id=claimed.job.id, token=claimed.token, update=ProgressUpdate(logs=("a line",))
        )
        if fail:
            await app.backend.fail(
                job_id=claimed.job.id,
                token=claimed.token,
                error="x",
                traceback=None,
                retry_in_ms=None,
                retention=keep,
            )
        else:
            await app.backend.complete(
                job_id=claimed.job.id, token=claimed.token, result=b"null", retention=keep
            )
        app.clock.advance(0.01)
    return ids


async def _trim(
    app: Conveyor, task: str, keep: Retention, *, state: str = "completed", limit: int = 1000
) -> int | None:
    return await app.backend.trim_finished(
        task=task, state=JobState(state), retention=keep, limit=limit
    )


async def test_trim_by_count_keeps_the_newest_completed(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(5)])
    keep = Retention(max_count=3)
    ids = await _finish(app, 5, keep=keep)
    assert len(await app.list_jobs("completed", limit=10)) == 5  # finishing trims nothing
    assert [entry.message for entry in await app.get_logs(ids[0])] == ["a line"]
    assert await _trim(app, "work", keep) == 2
    kept = [j.id for j in await app.list_jobs("completed", limit=10)]
    assert kept == list(reversed(ids[2:]))
    assert await _trim(app, "work", keep) == 0
    assert await app.get_logs(ids[0]) == []  # deleted with their job
    assert [entry.message for entry in await app.get_logs(ids[2])] == ["a line"]


async def test_trim_by_age_removes_old_failed_jobs(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(3)])
    keep = Retention(max_age_s=60)
    await _finish(app, 2, keep=keep, fail=True)
    app.clock.advance(61)
    last = await _finish(app, 1, keep=keep, fail=True)
    assert await _trim(app, "work", keep) == 0  # the completed ones: there are none
    assert await _trim(app, "work", keep, state="failed") == 2
    assert [j.id for j in await app.list_jobs("failed")] == last
    assert (await app.counts("default"))[JobState.FAILED] == 1


async def test_trim_is_per_task_and_bounded_per_call(app: Conveyor) -> None:
    @app.task
    async def keep_one(n: int) -> None: ...

    @app.task
    async def other(n: int) -> None: ...

    await app.enqueue_many([other.call(0), *(keep_one.call(i) for i in range(6))])
    keep = Retention(max_count=1)
    await _finish(app, 7, keep=keep)
    assert await _trim(app, "keep_one", keep, limit=3) == 3  # a full batch: call again
    assert await _trim(app, "keep_one", keep, limit=3) == 2
    tasks = sorted(j.task for j in await app.list_jobs("completed"))
    assert tasks == ["keep_one", "other"]


async def test_a_job_retried_by_hand_is_not_trimmed(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(3)])
    keep = Retention(max_count=1)
    ids = await _finish(app, 3, keep=keep, fail=True)
    assert await app.retry(ids[0])
    assert await _trim(app, "work", keep, state="failed") == 1
    assert (await app.get_job(ids[0])).state == "waiting"
    assert [j.id for j in await app.list_jobs("failed")] == [ids[2]]


async def test_concurrent_trims_delete_each_job_once(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(30)])
    keep = Retention(max_count=10)
    ids = await _finish(app, 30, keep=keep)
    results = await asyncio.gather(*(_trim(app, "work", keep) for _ in range(4)))
    # One trim at a time per task and state: a call finding another under way
    # does nothing (None); together they delete exactly the surplus.
    assert sum(r or 0 for r in results) == 20
    assert any(r == 20 for r in results)
    kept = {j.id for j in await app.list_jobs("completed", limit=50)}
    assert kept == set(ids[20:])


async def test_a_worker_keeps_a_burst_to_max_count(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task(keep_completed=Retention(max_count=20))
    async def burst(n: int) -> None: ...

    await app.enqueue_many([burst.call(i) for i in range(300)])
    await start_worker(concurrency=20)

    async def trimmed() -> bool:
        counts = await app.counts("default")
        return counts[JobState.WAITING] + counts[JobState.ACTIVE] == 0 and (
            counts[JobState.COMPLETED] <= 20
        )

    # Back at max_count within a second or two of the burst's last finish.
    await eventually(trimmed, timeout=15)
    assert (await app.counts("default"))[JobState.COMPLETED] == 20


async def test_a_worker_trims_by_age_when_a_task_gets_no_more_jobs(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task(keep_completed=Retention(max_age_s=60))
    async def once(n: int) -> None: ...

    handles = await app.enqueue_many([once.call(i) for i in range(3)])
    worker = await start_worker(concurrency=3)
    await eventually(lambda: _all_completed(app, 3))
    worker.stop()
    app.clock.advance(61)  # nothing else of this task will finish
    await start_worker(concurrency=1)  # a worker trims its tasks by age when it starts
    await eventually(lambda: _all_completed(app, 0))
    assert not [j for j in await app.list_jobs("completed") if j.id in {h.id for h in handles}]


async def _all_completed(app: Conveyor, n: int) -> bool:
    return (await app.counts("default"))[JobState.COMPLETED] == n


async def test_a_per_job_retention_is_trimmed_apart_from_its_tasks(app: Conveyor) -> None:
    from conveyor.job import retention_bucket

    @app.task(keep_completed=Retention(max_count=2))
    async def work(n: int) -> None: ...

    kept_forever = work.configure(keep_completed=Retention(max_count=None))
    gone_soon = work.configure(keep_completed=Retention(max_count=0))
    own = retention_bucket("work", Retention(max_count=0), Retention(max_count=2))
    await app.enqueue_many([work.call(n) for n in range(4)])
    await kept_forever.enqueue(90)
    await gone_soon.enqueue(91)
    ids = []
    for _ in range(6):
        (claimed,) = await claim(app, limit=1)
        n = msgspec.json.decode(claimed.payload)["n"]
        bucket = {90: retention_bucket("work", Retention(), Retention(max_count=2)), 91: own}
        keep = claimed.job.options.keep_completed
        await app.backend.complete(
            job_id=claimed.job.id,
            token=claimed.token,
            result=b"null",
            retention=keep,
            bucket=bucket.get(n, "work"),
        )
        ids.append((n, claimed.job.id))
        app.clock.advance(0.01)
    assert await _trim(app, "work", Retention(max_count=2)) == 2  # its own 4: the newest 2 stay
    assert await _trim(app, own, Retention(max_count=0)) == 1
    left = {job.args["n"] for job in await app.list_jobs("completed")}
    assert left == {2, 3, 90}  # the task's newest two, and the one kept for good


async def test_a_worker_removes_a_job_configured_to_keep_none(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def work(n: int) -> int:
        return n

    kept = await work.enqueue(1)
    removed = await work.configure(keep_completed=Retention(max_count=0)).enqueue(2)
    failing = work.configure(keep_failed=Retention(max_count=0))
    await start_worker()
    assert (await kept.wait(5)).result == 1

    async def gone() -> bool:
        return [job.id for job in await app.list_jobs("completed")] == [kept.id]

    await eventually(gone, message="the job that keeps none, trimmed after it ran")
    other = await failing.enqueue(3)  # keeps none if it fails: it completes, and stays
    assert (await other.wait(5)).result == 3
    await eventually(lambda: _all_completed(app, 2))
    assert {job.id for job in await app.list_jobs("completed")} == {kept.id, other.id}
    assert removed.id not in {job.id for job in await app.list_jobs("completed")}
