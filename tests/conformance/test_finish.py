"""How attempts end: completion, failure with and without retry, TTL."""

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
        job_id=handle.id,
        token=claimed.token,
        error="ValueError: no",
        traceback="tb",
        retry_in_ms=5000,
        retention=KEEP,
    )
    job = await app.get_job(handle.id)
    assert (job.state, job.error, job.traceback, job.attempts) == (
        "delayed",
        "ValueError: no",
        "tb",
        1,
    )
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
        job_id=handle.id,
        token=claimed.token,
        error="boom",
        traceback=None,
        retry_in_ms=None,
        retention=KEEP,
    )
    job = await app.get_job(handle.id)
    assert job.state == "failed" and job.error == "boom" and job.finished_at is not None
    assert [j.id for j in await app.list_jobs("failed")] == [handle.id]


async def test_a_job_past_its_ttl_is_cancelled_as_expired_by_the_claim(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    stale = await work.configure(ttl=60).enqueue()
    fresh = await work.configure(ttl=600).enqueue()
    plain = await work.enqueue()
    app.clock.advance(61)
    claimed = await claim(app)
    assert [c.job.id for c in claimed] == [fresh.id, plain.id]
    job = await app.get_job(stale.id)
    assert (job.state, job.error, job.attempts) == (JobState.CANCELLED, "expired", 0)
    assert (await app.counts("default"))[JobState.CANCELLED] == 1


async def test_a_job_that_started_once_never_expires(app: Conveyor) -> None:
    """Released at shutdown, or retried by hand: it started before, so its TTL
    is spent and it runs whenever it is claimed next."""

    @app.task
    async def work() -> None: ...

    released, retried = (
        await work.configure(ttl=60).enqueue(),
        await work.configure(ttl=60).enqueue(),
    )
    first = {c.job.id: c for c in await claim(app)}
    assert await app.backend.release(job_id=released.id, token=first[released.id].token)
    assert await app.backend.fail(
        job_id=retried.id,
        token=first[retried.id].token,
        error="x",
        traceback=None,
        retry_in_ms=None,
        retention=KEEP,
    )
    app.clock.advance(120)
    assert await app.retry(retried.id)
    assert sorted(c.job.id for c in await claim(app)) == sorted([released.id, retried.id])
