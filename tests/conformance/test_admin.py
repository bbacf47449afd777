"""Managing jobs and queues: cancel, remove, promote, retry, clean, list, counts."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, InvalidInput, JobNotFound, JobState, Retention
from conveyor.backends.values import ProgressUpdate

from .conftest import claim, extend

KEEP = Retention()


async def test_cancel_waiting_and_delayed_jobs(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    waiting = await work.enqueue()
    delayed = await work.configure(delay=30).enqueue()
    assert await app.cancel(waiting.id) and await app.cancel(delayed.id)
    for handle in (waiting, delayed):
        job = await app.get_job(handle.id)
        assert job.state == "cancelled" and job.finished_at is not None
    app.clock.advance(31)
    assert await claim(app) == []
    assert not await app.cancel(waiting.id)  # already finished


async def test_cancel_active_job_fences_out_its_worker(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    assert await app.cancel(handle.id)
    lost = await extend(app, [(handle.id, claimed.token)], 1)
    assert lost == [(handle.id, claimed.token)]
    assert not await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"1", retention=KEEP
    )
    assert (await app.get_job(handle.id)).state == "cancelled"


async def test_remove_deletes_a_job_and_its_logs_but_not_an_active_one(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    gone = await work.enqueue()
    busy = await work.enqueue()
    (claimed,) = await claim(app, limit=1)  # claims `gone` (FIFO)
    assert not await app.remove(gone.id)
    update = ProgressUpdate(logs=("kept until removed",))
    await app.backend.report_progress(job_id=gone.id, token=claimed.token, update=update)
    await app.backend.complete(job_id=gone.id, token=claimed.token, result=b"1", retention=KEEP)
    assert len(await app.get_logs(gone.id)) == 1
    assert await app.remove(gone.id)
    assert await app.get_logs(gone.id) == []
    assert await app.remove(busy.id)
    with pytest.raises(JobNotFound):
        await app.get_job(busy.id)
    assert not await app.remove(busy.id)


async def test_promote_runs_a_delayed_job_now(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.configure(delay=3600).enqueue()
    assert await app.promote(handle.id)
    assert (await app.get_job(handle.id)).state == "waiting"
    assert not await app.promote(handle.id)
    assert [c.job.id for c in await claim(app)] == [handle.id]


async def _failed(app: Conveyor, queue: str = "default") -> str:
    @app.task(queue=queue, name=f"fails_{queue}")
    async def fails() -> None: ...

    handle = await fails.enqueue()
    (claimed,) = await claim(app, [queue])
    await app.backend.fail(
        job_id=handle.id,
        token=claimed.token,
        error="x",
        traceback=None,
        retry_in_ms=None,
        retention=KEEP,
    )
    return handle.id


async def test_retry_one_failed_job_gives_fresh_attempts(app: Conveyor) -> None:
    job_id = await _failed(app)
    assert await app.retry(job_id)
    job = await app.get_job(job_id)
    assert (job.state, job.attempts, job.error, job.finished_at) == ("waiting", 0, None, None)
    assert not await app.retry(job_id)  # only failed or cancelled jobs


async def test_retry_a_completed_job_runs_it_again_from_fresh(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    await app.backend.complete(job_id=handle.id, token=claimed.token, result=b"42", retention=KEEP)
    assert not await app.retry(handle.id)  # by default: failed or cancelled jobs only
    assert not await app.retry(handle.id, state="failed")
    start = await app.backend.last_event_id()
    assert await app.retry(handle.id, state="completed")
    job = await app.get_job(handle.id)
    assert (job.state, job.attempts, job.result, job.finished_at) == ("waiting", 0, None, None)
    assert (await app.counts("default"))[JobState.COMPLETED] == 0
    (event,) = (await app.backend.read_events(after=start, limit=10)).events
    assert (event.kind.value, event.job_id) == ("waiting", handle.id)
    (again,) = await claim(app)
    assert again.job.id == handle.id and again.job.attempts == 1
    assert await app.backend.complete(
        job_id=handle.id, token=again.token, result=b"43", retention=KEEP
    )
    assert (await app.get_job(handle.id)).result == 43
    assert (await app.counts("default"))[JobState.COMPLETED] == 1
    with pytest.raises(InvalidInput) as bad:
        await app.retry(handle.id, state="waiting")
    assert bad.value.field == "state"


async def test_retry_all_failed_of_one_queue(app: Conveyor) -> None:
    a = await _failed(app, "a")
    b = await _failed(app, "b")
    assert await app.retry_failed("a") == 1
    assert (await app.get_job(a)).state == "waiting"
    assert (await app.get_job(b)).state == "failed"
    assert await app.retry_failed() == 1


async def test_clean_by_age_and_count(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(6)])
    for claimed in await claim(app, limit=6):
        await app.backend.complete(
            job_id=claimed.job.id, token=claimed.token, result=b"1", retention=KEEP
        )
        app.clock.advance(10)
    # finished 60, 50, ... 10 seconds ago; keep the newest 2, delete those older than 25 s
    assert await app.clean("completed", older_than=25, keep=2) == 4
    assert len(await app.list_jobs("completed")) == 2
    for unclean in ("active", "waiting_children"):
        with pytest.raises(InvalidInput) as caught:
            await app.clean(unclean)
        assert caught.value.field == "state"


async def test_list_jobs_pages_in_run_order(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.configure(priority=n % 3).call(n) for n in range(9)])
    pages = [await app.list_jobs("waiting", offset=o, limit=4) for o in (0, 4, 8)]
    order = [j.args["n"] for page in pages for j in page]
    assert order == [2, 5, 8, 1, 4, 7, 0, 3, 6]
    assert [len(p) for p in pages] == [4, 4, 1]


async def test_queues_report_counts_per_state(app: Conveyor) -> None:
    @app.task(queue="q")
    async def work() -> None: ...

    await work.enqueue()
    await work.enqueue()
    await work.configure(delay=10).enqueue()
    await claim(app, ["q"], limit=1)
    counts = await app.counts("q")
    assert counts[JobState.WAITING] == 1
    assert counts[JobState.ACTIVE] == 1
    assert counts[JobState.DELAYED] == 1
    assert sum(counts.values()) == 3
    assert (await app.counts("nothing-here"))[JobState.WAITING] == 0


async def test_paging_through_finished_jobs_lists_each_job_once(app: Conveyor) -> None:
    """Jobs finished in the same millisecond keep one order across pages (found
    by the chaos suite: Redis once sorted ties one way in Lua, another in Python)."""

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    handles = await app.enqueue_many([add.call(n, n) for n in range(200)])
    claimed = await claim(app, limit=200, lease_ms=60_000)
    assert len(claimed) == 200
    done = await asyncio.gather(
        *(
            app.backend.complete(job_id=c.job.id, token=c.token, result=b"1", retention=KEEP)
            for c in claimed
        )
    )
    assert all(done)
    listed: list[str] = []
    for offset in range(0, 200, 50):
        listed += [job.id for job in await app.list_jobs("completed", offset=offset, limit=50)]
    assert sorted(listed) == sorted(h.id for h in handles)  # each once


async def test_a_command_for_a_worker_is_taken_once_with_its_heartbeat(app: Conveyor) -> None:
    from conveyor.backends.values import WorkerInfo

    now = await app.backend.now_ms()
    info = WorkerInfo(
        id="w-1",
        hostname="h",
        pid=1,
        queues=["default"],
        concurrency=1,
        active=0,
        processed=0,
        started_at_ms=now,
        last_seen_ms=now,
    )
    assert not await app.pause_worker("w-1")  # no heartbeat yet: nothing is left
    assert await app.backend.record_worker(worker=info, worker_id="w-1") is None
    assert await app.pause_worker("w-1")
    assert await app.resume_worker("w-1")  # replaces the pause it has not taken
    assert await app.backend.record_worker(worker=info, worker_id="w-1") == "resume"
    assert await app.backend.record_worker(worker=info, worker_id="w-1") is None  # taken
    assert await app.pause_worker("w-1")
    assert await app.backend.record_worker(worker=None, worker_id="w-1") is None  # it stopped
    assert await app.workers() == []
    assert not await app.resume_worker("w-1")
    await app.backend.record_worker(worker=info, worker_id="w-1")
    assert await app.backend.record_worker(worker=info, worker_id="w-1") is None  # none left
