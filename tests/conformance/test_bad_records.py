"""One bad record harms only itself: a job whose stored record cannot be read
(written by hand, by another version, by a bug) fails on its own, with an
error naming it, and the jobs claimed or reclaimed beside it carry on."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from conveyor import BackendError, Conveyor, JobState
from conveyor.cron import tick_job_id

from .conftest import claim


async def corrupt(app: Conveyor, job_id: str) -> None:
    """Write garbage into the job's stored record, behind the app's back."""
    backend: Any = app.backend
    if app.url.startswith("sqlite"):
        with sqlite3.connect(app.url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE jobs SET options = 'garbage{' WHERE id = ?", (job_id,))
    else:
        await backend.client.hset(backend.keys.job(job_id), "data", "garbage{")


async def test_an_unreadable_waiting_job_fails_alone_and_its_claim_runs_the_rest(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = await app.enqueue_many([work.call(n) for n in range(20)])
    bad = handles[5].id
    await corrupt(app, bad)
    claimed = await claim(app, limit=20)
    assert sorted(c.job.id for c in claimed) == sorted(h.id for h in handles if h.id != bad)
    counts = await app.counts("default")
    assert (counts[JobState.ACTIVE], counts[JobState.FAILED], counts[JobState.WAITING]) == (
        19,
        1,
        0,
    )
    assert await claim(app, limit=20) == []  # nothing left behind, nothing claimed again


async def test_reclaim_recovers_the_others_beside_an_unreadable_active_job(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = await app.enqueue_many([work.call(n) for n in range(3)])
    held = await claim(app, limit=3, worker="dead", lease_ms=100)
    assert len(held) == 3
    await corrupt(app, handles[0].id)
    app.clock.advance(1.0)
    result = await app.backend.reclaim_expired(max_stalls=5, limit=100)
    assert {handles[1].id, handles[2].id} <= set(result.requeued)
    again = await claim(app, limit=3)
    assert sorted(c.job.id for c in again) == sorted([handles[1].id, handles[2].id])
    assert (await app.counts("default"))[JobState.FAILED] == 1  # the bad one, on its own


async def test_reading_an_unreadable_job_raises_a_backend_error_naming_it(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handle = await work.enqueue(1)
    await corrupt(app, handle.id)
    with pytest.raises(BackendError, match=f"job {handle.id}: unreadable record"):
        await app.get_job(handle.id)
    with pytest.raises(BackendError, match=f"job {handle.id}: unreadable record"):
        await app.list_jobs("waiting", queue="default")
    assert (await app.counts("default"))[JobState.WAITING] == 1  # counting reads no record


async def write_schedule_spec(app: Conveyor, schedule_id: str, spec: bytes) -> None:
    backend: Any = app.backend
    if app.url.startswith("sqlite"):
        with sqlite3.connect(app.url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE schedules SET spec = ? WHERE id = ?", (spec, schedule_id))
    else:
        await backend.client.hset(backend.keys.schedules, schedule_id, spec)


async def test_unreadable_schedules_are_skipped_and_the_others_keep_firing(
    app: Conveyor,
) -> None:
    @app.task
    async def report(kind: str) -> str:
        return kind

    good = await app.schedules.add("report", every=60, id="good", args=["x"])
    await app.schedules.add("report", every=60, id="garbled", args=["x"])
    await app.schedules.add("report", every=60, id="odd-cron", args=["x"])
    await write_schedule_spec(app, "garbled", b"garbage{")
    await write_schedule_spec(
        app, "odd-cron", b'{"id":"odd-cron","task":"report","cron":"99 * * * *"}'
    )  # valid JSON, a cron this code refuses
    listed = {info.schedule.id: info for info in await app.schedules.list()}
    assert set(listed) == {"good", "odd-cron"}
    assert listed["odd-cron"].next_run_ms is None
    assert listed["good"].next_run_ms == good.anchor_ms + 60_000
    app.clock.advance(61)
    assert await app.schedules.fire_due() == 1
    job = await app.get_job(tick_job_id("good", good.anchor_ms + 60_000))
    assert job.task == "report"


async def test_obliterate_removes_unreadable_and_orphaned_jobs_too(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = await app.enqueue_many([work.call(n) for n in range(10)])
    await corrupt(app, handles[3].id)
    if not app.url.startswith("sqlite"):  # a set member whose record is gone (evicted)
        backend: Any = app.backend
        await backend.client.delete(backend.keys.job(handles[7].id))
    assert await app.obliterate("default", force=True) >= 8
    assert "default" not in {q.name for q in await app.queues()}
    assert await app.list_jobs("waiting") == []
