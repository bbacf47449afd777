"""Leases and fencing: a stale token changes nothing; expired leases come back."""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, JobState, Retention
from conveyor.backends.base import stalled_message
from conveyor.backends.values import ProgressUpdate

from .conftest import claim, extend

KEEP = Retention()


async def _reclaimed_job(app: Conveyor) -> tuple[str, str, str]:
    """A job claimed by w1, whose lease expired and was claimed again by w2."""

    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (old,) = await claim(app, worker="w1", lease_ms=1000)
    app.clock.advance(1.5)
    result = await app.backend.reclaim_expired(max_stalls=5, limit=100)
    assert result.requeued == [handle.id]
    (new,) = await claim(app, worker="w2", lease_ms=30_000)
    assert new.token != old.token
    return handle.id, old.token, new.token


async def test_stale_token_cannot_complete_fail_extend_release_or_report(app: Conveyor) -> None:
    job_id, stale, current = await _reclaimed_job(app)
    backend = app.backend
    assert not await backend.complete(job_id=job_id, token=stale, result=b"1", retention=KEEP)
    assert not await backend.fail(
        job_id=job_id, token=stale, error="x", traceback=None, retry_in_ms=None, retention=KEEP
    )
    lost = await extend(app, [(job_id, stale), (job_id, current)], 60_000)
    assert lost == [(job_id, stale)]
    assert not await backend.release(job_id=job_id, token=stale)
    update = ProgressUpdate(progress=50, logs=("late",))
    assert not await backend.report_progress(job_id=job_id, token=stale, update=update)
    job = await app.get_job(job_id)
    assert (job.state, job.worker_id, job.progress) == ("active", "w2", 0)
    # Only the stall record, not the stale holder's line.
    assert [e.message for e in await app.get_logs(job_id)] == [stalled_message(1, 5)]
    assert await backend.complete(job_id=job_id, token=current, result=b"7", retention=KEEP)
    assert (await app.get_job(job_id)).result == 7


async def test_expired_lease_is_reclaimed_and_counts_a_stall_not_an_attempt(
    app: Conveyor,
) -> None:
    job_id, _, _ = await _reclaimed_job(app)
    job = await app.get_job(job_id)
    assert job.stalls == 1 and job.attempts == 1  # the stalled run gave its attempt back


async def test_live_lease_is_not_reclaimed(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    await work.enqueue()
    await claim(app, lease_ms=10_000)
    app.clock.advance(9)
    result = await app.backend.reclaim_expired(max_stalls=1, limit=100)
    assert result.requeued == [] and result.failed == []


async def test_extending_a_lease_keeps_it_from_expiring(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app, lease_ms=1000)
    app.clock.advance(0.8)
    lost = await extend(app, [(handle.id, claimed.token)], 1000)
    assert lost == []
    app.clock.advance(0.8)  # 1.6 s after the claim, 0.8 s after the renewal
    assert (await app.backend.reclaim_expired(max_stalls=1, limit=100)).requeued == []


async def test_a_lease_extended_from_another_thread_keeps_its_job(app: Conveyor) -> None:
    """``extend_leases_blocking``, as the worker's lease keeper calls it: from a
    thread of its own, on its own connection, reporting stale tokens as lost."""

    @app.task
    async def work() -> None: ...

    mine, reclaimed = await work.enqueue(), await work.enqueue()
    held = {c.job.id: c.token for c in await claim(app, lease_ms=1000)}
    app.clock.advance(1.5)
    result = await app.backend.reclaim_expired(
        max_stalls=5,
        limit=100,
        suspects=[
            (job_id, expiry)
            for job_id, expiry in await app.backend.expired_leases(limit=10)
            if job_id == reclaimed.id
        ],
    )
    assert result.requeued == [reclaimed.id]
    leases = [(mine.id, held[mine.id]), (reclaimed.id, held[reclaimed.id])]
    lost = await asyncio.to_thread(
        lambda: app.backend.extend_leases_blocking(leases=leases, lease_ms=10_000)
    )
    assert lost == [(reclaimed.id, held[reclaimed.id])]
    app.clock.advance(5)  # 6.5 s after the claim, 5 s into the renewed lease
    assert await app.backend.expired_leases(limit=10) == []
    assert (await app.get_job(mine.id)).state == JobState.ACTIVE


async def test_job_stalling_more_than_max_stalls_fails_as_stalled(app: Conveyor) -> None:
    @app.task
    async def poison() -> None: ...

    handle = await poison.enqueue()
    for _ in range(2):
        await claim(app, lease_ms=1000)
        app.clock.advance(2)
        result = await app.backend.reclaim_expired(max_stalls=1, limit=100)
    assert result.failed == [handle.id]
    job = await app.get_job(handle.id)
    assert job.state == "failed" and job.error == "stalled" and job.stalls == 2
    assert job.finished_at is not None


async def test_reclaim_works_in_bounded_batches(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(25)])
    await claim(app, limit=25, lease_ms=1000)
    app.clock.advance(2)
    first = await app.backend.reclaim_expired(max_stalls=1, limit=10)
    second = await app.backend.reclaim_expired(max_stalls=1, limit=100)
    assert len(first.requeued) == 10 and len(second.requeued) == 15
    assert (await app.counts("default"))[JobState.WAITING] == 25


async def test_release_returns_job_to_waiting_without_using_an_attempt(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    assert await app.backend.release(job_id=handle.id, token=claimed.token)
    job = await app.get_job(handle.id)
    assert (job.state, job.attempts, job.stalls) == ("waiting", 0, 0)
    (again,) = await claim(app)
    assert again.job.attempts == 1


async def test_progress_and_logs_are_stored_for_the_lease_holder(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    backend = app.backend
    update = ProgressUpdate(progress=40, detail={"stage": "query"}, logs=("one", "two"))
    assert await backend.report_progress(job_id=handle.id, token=claimed.token, update=update)
    more = ProgressUpdate(progress=80, logs=("three",))
    assert await backend.report_progress(job_id=handle.id, token=claimed.token, update=more)
    job = await app.get_job(handle.id)
    assert job.progress == 80 and job.progress_detail == {"stage": "query"}
    assert [entry.message for entry in await app.get_logs(handle.id)] == ["one", "two", "three"]


async def test_concurrent_completions_are_fenced_one_by_one(app: Conveyor) -> None:
    """Completions sent together (Redis merges them into one script call) each
    succeed or fail on their own token, and each job keeps its own result."""

    @app.task
    async def work(n: int) -> int:
        return n

    handles = [await work.enqueue(n) for n in range(6)]
    claimed = await claim(app, limit=6)
    assert len(claimed) == 6
    stale = {claimed[1].job.id, claimed[4].job.id}
    outcomes = await asyncio.gather(
        *(
            app.backend.complete(
                job_id=c.job.id,
                token="not-the-token" if c.job.id in stale else c.token,
                result=str(c.job.args["n"] * 10).encode(),
                retention=KEEP,
            )
            for c in claimed
        )
    )
    assert outcomes == [c.job.id not in stale for c in claimed]
    for handle in handles:
        job = await app.get_job(handle.id)
        if handle.id in stale:
            assert (job.state, job.result) == (JobState.ACTIVE, None)
        else:
            assert (job.state, job.result) == (JobState.COMPLETED, job.args["n"] * 10)


async def test_two_phase_reclaim_spares_a_lease_renewed_after_it_was_seen(
    app: Conveyor,
) -> None:
    """Phase one notes expired leases; phase two reclaims only those whose lease
    still has the expiry seen: the holder of one renewed meanwhile (after an
    outage, say) keeps its job."""

    @app.task
    async def work() -> None: ...

    renewed, abandoned = await work.enqueue(), await work.enqueue()
    (first, second) = await claim(app, lease_ms=1000)
    held = {c.job.id: c for c in (first, second)}
    app.clock.advance(1.5)
    suspects = await app.backend.expired_leases(limit=10)
    assert sorted(job_id for job_id, _ in suspects) == sorted([renewed.id, abandoned.id])
    assert await extend(app, [(renewed.id, held[renewed.id].token)], 30_000) == []
    result = await app.backend.reclaim_expired(max_stalls=1, limit=10, suspects=suspects)
    assert (result.requeued, result.failed) == ([abandoned.id], [])
    assert (await app.get_job(renewed.id)).state == JobState.ACTIVE
    job = await app.get_job(abandoned.id)
    assert (job.state, job.stalls) == (JobState.WAITING, 1)
    assert [e.message for e in await app.get_logs(abandoned.id)] == [stalled_message(1, 1)]
    assert await app.get_logs(renewed.id) == []


async def test_a_job_failed_for_stalling_says_so_in_its_log(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    for _ in range(2):
        await claim(app, lease_ms=1000)
        app.clock.advance(1.5)
        await app.backend.reclaim_expired(max_stalls=1, limit=10)
    job = await app.get_job(handle.id)
    assert (job.state, job.error) == (JobState.FAILED, "stalled")
    assert [e.message for e in await app.get_logs(handle.id)] == [
        stalled_message(1, 1),
        stalled_message(2, 1),
    ]
