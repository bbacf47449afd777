"""How attempts end: completion, failure with and without retry, retention."""

from __future__ import annotations

from conveyor import Conveyor, JobState, Retention

from .conftest import claim

KEEP = Retention()


async def test_complete_stores_result_and_clears_lease(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    done = await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b'{"rows": 3}', retention=KEEP
    )
    assert done
    job = await app.get_job(handle.id)
    assert job.state == "completed" and job.result == {"rows": 3}
    assert job.finished_at is not None and job.finished_at >= job.started_at  # type: ignore[operator]
    again = await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"2", retention=KEEP
    )
    assert not again  # a finished job cannot be completed twice


async def test_fail_with_retry_waits_out_the_backoff(app: Conveyor) -> None:
    @app.task(retries=1)
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    assert await app.backend.fail(
        job_id=handle.id, token=claimed.token, error="ValueError: no", traceback="tb",
        retry_in_ms=5000, retention=KEEP,
    )  # fmt: skip
    job = await app.get_job(handle.id)
    assert (job.state, job.error, job.traceback, job.attempts) == ("delayed", "ValueError: no",
                                                                    "tb", 1)  # fmt: skip
    assert await claim(app) == []
    app.clock.advance(4.9)
    assert await claim(app) == []
    app.clock.advance(0.2)
    (second,) = await claim(app)
    assert second.job.attempts == 2


async def test_fail_without_retry_lands_in_the_dead_letter_set(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    await app.backend.fail(
        job_id=handle.id, token=claimed.token, error="boom", traceback=None,
        retry_in_ms=None, retention=KEEP,
    )  # fmt: skip
    job = await app.get_job(handle.id)
    assert job.state == "failed" and job.error == "boom" and job.finished_at is not None
    assert [j.id for j in await app.list_jobs("failed")] == [handle.id]


async def _finish(app: Conveyor, n: int, *, keep: Retention, fail: bool = False) -> list[str]:
    ids = []
    for _ in range(n):
        (claimed,) = await claim(app, limit=1)
        ids.append(claimed.job.id)
        if fail:
            await app.backend.fail(
                job_id=claimed.job.id, token=claimed.token, error="x", traceback=None,
                retry_in_ms=None, retention=keep,
            )  # fmt: skip
        else:
            await app.backend.complete(
                job_id=claimed.job.id, token=claimed.token, result=b"null", retention=keep
            )
        app.clock.advance(0.01)
    return ids


async def test_retention_by_count_keeps_the_newest_completed(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(5)])
    ids = await _finish(app, 5, keep=Retention(max_count=3))
    kept = [j.id for j in await app.list_jobs("completed", limit=10)]
    assert kept == list(reversed(ids[2:]))


async def test_retention_by_age_removes_old_failed_jobs(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(3)])
    keep = Retention(max_age_s=60)
    first = await _finish(app, 2, keep=keep, fail=True)
    app.clock.advance(61)
    last = await _finish(app, 1, keep=keep, fail=True)
    assert [j.id for j in await app.list_jobs("failed")] == last
    assert (await app.counts("default"))[JobState.FAILED] == 1
    assert first  # the two older ones are gone


async def test_retention_is_per_task(app: Conveyor) -> None:
    @app.task
    async def keep_one(n: int) -> None: ...

    @app.task
    async def other(n: int) -> None: ...

    await app.enqueue_many([other.call(0), keep_one.call(1), keep_one.call(2)])
    await _finish(app, 3, keep=Retention(max_count=1))
    tasks = sorted(j.task for j in await app.list_jobs("completed"))
    assert tasks == ["keep_one", "other"]


async def test_the_lease_holder_cancels_its_own_job_with_a_reason(app: Conveyor) -> None:
    """``cancel`` with a token: only the holder's active job, with the given reason."""

    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    backend = app.backend
    assert not await backend.cancel(job_id=handle.id, token="not-it", reason="expired")
    assert (await app.get_job(handle.id)).state == JobState.ACTIVE
    assert await backend.cancel(job_id=handle.id, token=claimed.token, reason="expired")
    job = await app.get_job(handle.id)
    assert (job.state, job.error) == (JobState.CANCELLED, "expired")
    assert not await backend.cancel(job_id=handle.id, token=claimed.token, reason="expired")
    waiting = await work.enqueue()
    assert not await backend.cancel(job_id=waiting.id, token=claimed.token)  # not active
    assert (await app.get_job(waiting.id)).state == JobState.WAITING
