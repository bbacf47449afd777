"""Adding jobs: what is stored, dedup by job id, bulk enqueue, delays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from conveyor import Conveyor, JobState

from .conftest import claim


async def test_enqueued_job_is_stored_waiting_with_its_arguments(app: Conveyor) -> None:
    @app.task(queue="mail", retries=2, priority=3)
    async def send(to: str, subject: str = "hi") -> None: ...

    handle = await send.enqueue("a@b.c", subject="welcome")
    job = await app.get_job(handle.id)
    assert handle.created
    assert (job.id, job.task, job.queue, job.state) == (handle.id, "send", "mail", "waiting")
    assert job.args == {"to": "a@b.c", "subject": "welcome"}
    assert (job.priority, job.attempts, job.max_attempts) == (3, 0, 3)
    assert job.created_at.tzinfo is UTC
    assert job.started_at is None and job.finished_at is None
    assert (await app.counts("mail"))[JobState.WAITING] == 1


async def test_existing_job_id_is_not_enqueued_twice(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    first = await work.configure(job_id="report-42").enqueue(1)
    again = await work.configure(job_id="report-42", priority=9).enqueue(2)
    assert first.created and not again.created
    job = await app.get_job("report-42")
    assert job.args == {"n": 1} and job.priority == 0  # the stored job is left as it was
    assert (await app.counts("default"))[JobState.WAITING] == 1


async def test_duplicate_ids_within_one_bulk_enqueue_add_one_job(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = await app.enqueue_many(
        [work.configure(job_id="same").call(1), work.call(2), work.configure(job_id="same").call(3)]
    )
    assert [h.created for h in handles] == [True, True, False]
    assert (await app.get_job("same")).args == {"n": 1}
    assert (await app.counts("default"))[JobState.WAITING] == 2


async def test_bulk_enqueue_adds_thousands_in_order(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = await app.enqueue_many([work.call(i) for i in range(5000)])
    assert len({h.id for h in handles}) == 5000 and all(h.created for h in handles)
    assert (await app.counts("default"))[JobState.WAITING] == 5000
    claimed = await claim(app, limit=100)
    assert [c.job.args["n"] for c in claimed] == list(range(100))


async def test_delayed_job_waits_for_its_time(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.configure(delay=60).enqueue()
    job = await app.get_job(handle.id)
    assert job.state == "delayed"
    assert timedelta(seconds=59) < job.run_at - job.created_at <= timedelta(seconds=60)
    assert await claim(app) == []
    app.clock.advance(59)
    assert await claim(app) == []
    app.clock.advance(1.1)
    (claimed,) = await claim(app)
    assert claimed.job.id == handle.id and claimed.job.state == "active"


async def test_run_at_schedules_an_absolute_time(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    at = datetime.now(UTC) + timedelta(hours=1)
    handle = await work.configure(run_at=at).enqueue()
    job = await app.get_job(handle.id)
    assert job.state == "delayed"
    assert abs((job.run_at - at).total_seconds()) < 0.01
    past = await work.configure(run_at=datetime.now(UTC) - timedelta(hours=1)).enqueue()
    assert (await app.get_job(past.id)).state == "waiting"
    app.clock.advance(3601)
    assert {c.job.id for c in await claim(app)} == {handle.id, past.id}
