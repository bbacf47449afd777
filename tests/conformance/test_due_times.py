"""A job due at a time starts on time: within 50 ms of it when a worker has a
free slot, on every store, whatever woke or did not wake the worker."""

from __future__ import annotations

from conveyor import Conveyor, Job, Retry

from ..conftest import StartWorker

LATE_MS = 50


def _lateness_ms(job: Job) -> float:
    """How long after it was due the job's last attempt started (store clock)."""
    assert job.started_at is not None
    return (job.started_at - job.run_at).total_seconds() * 1000


async def _idle_worker(app: Conveyor, start_worker: StartWorker) -> None:
    """A worker that has run a job and found nothing more: it waits idle."""

    @app.task(name="warm")
    async def warm() -> None: ...

    await start_worker(concurrency=2)
    await (await warm.enqueue()).wait(10)


async def test_a_delayed_job_enqueued_while_workers_idle_starts_on_time(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def later(n: int) -> None: ...

    await _idle_worker(app, start_worker)
    for delay in (0.3, 0.15, 0.05):
        job = await (await later.configure(delay=delay).enqueue(0)).wait(10)
        assert job.state == "completed"
        assert 0 <= _lateness_ms(job) < LATE_MS, (delay, _lateness_ms(job))


async def test_retries_start_when_their_backoff_ends(
    app: Conveyor, start_worker: StartWorker
) -> None:
    """Failures written back as delayed (the default backoff's shape, a fixed
    one, and a delay the job asks for) wake the idle worker in time."""
    attempts: dict[str, int] = {}

    @app.task(retries=1, backoff=Retry.fixed(0.3))
    async def fixed(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise ValueError("first attempt fails")

    @app.task(retries=1, backoff=Retry.exponential(0.2, jitter=False))
    async def exponential(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise ValueError("first attempt fails")

    @app.task(retries=1)
    async def asks(key: str) -> None:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] == 1:
            raise Retry(delay=0.4)

    await _idle_worker(app, start_worker)
    for task in (fixed, exponential, asks):
        job = await (await task.enqueue(task.name)).wait(10)
        assert (job.state, job.attempts) == ("completed", 2)
        assert 0 <= _lateness_ms(job) < LATE_MS, (task.name, _lateness_ms(job))
