"""Middleware (conveyor.middleware): the hooks around enqueues and attempts,
with real workers on SQLite and Redis; a hook that raises changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest

from conveyor import Backoff, Conveyor, Job, JobState, Worker, WorkerSettings
from conveyor.backends.values import NewJob, QueueSlots
from conveyor.errors import InvalidInput
from conveyor.flow import chain
from conveyor.middleware import Middleware, Outcome, with_headers

from .conftest import eventually


class Recorder(Middleware):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (hook, job id, detail)
        self.outcomes: dict[str, Outcome] = {}

    async def enqueued(self, jobs: Sequence[NewJob], created: Sequence[bool]) -> None:
        for job, made in zip(jobs, created, strict=True):
            self.seen.append(("enqueued", job.id, str(made)))

    async def started(self, job: Job) -> None:
        self.seen.append(("started", job.id, str(job.attempts)))

    async def retrying(self, job: Job, outcome: Outcome) -> None:
        self.seen.append(("retrying", job.id, outcome.error or ""))

    async def finished(self, job: Job, outcome: Outcome) -> None:
        self.seen.append(("finished", job.id, outcome.ending))
        self.outcomes[job.id] = outcome

    async def stalled(self, job_ids: Sequence[str], failed: bool) -> None:
        self.seen.extend(("stalled", job_id, str(failed)) for job_id in job_ids)


class Broken(Middleware):
    async def started(self, job: Job) -> None:
        raise RuntimeError("a hook's own bug")

    async def finished(self, job: Job, outcome: Outcome) -> None:
        raise RuntimeError("a hook's own bug")


async def test_hooks_see_enqueues_and_every_attempt(store_url: str) -> None:
    app = Conveyor(store_url)
    recorder = Recorder()
    app.use(Broken())  # first: its errors must not keep the recorder from hearing
    app.use(recorder)
    tries = {"n": 0}

    @app.task(retries=1, backoff=Backoff(kind="fixed", base=0.01))
    async def flaky() -> str:
        tries["n"] += 1
        if tries["n"] == 1:
            raise ValueError("first try")
        await asyncio.sleep(0.05)
        return "ok"

    async with app:
        handle = await flaky.configure(job_id="f-1").enqueue()
        again = await flaky.configure(job_id="f-1").enqueue()
        assert not again.created
        worker = Worker(app, WorkerSettings(concurrency=2))
        running = asyncio.create_task(worker.run())
        try:
            assert await handle.result(10) == "ok"
            await eventually(lambda: _has(recorder, ("finished", "f-1", "completed")))
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)
        assert recorder.seen == [
            ("enqueued", "f-1", "True"),
            ("enqueued", "f-1", "False"),
            ("started", "f-1", "1"),
            ("retrying", "f-1", "ValueError: first try"),
            ("finished", "f-1", "retrying"),
            ("started", "f-1", "2"),
            ("finished", "f-1", "completed"),
        ]
        done = recorder.outcomes["f-1"]
        assert done.run_s >= 0.05 and done.wait_s >= 0 and done.error is None
        assert (
            await app.get_job("f-1")
        ).state is JobState.COMPLETED  # the broken hook changed nothing


async def _has(recorder: Recorder, entry: tuple[str, str, str]) -> bool:
    return entry in recorder.seen


async def test_a_reclaim_tells_the_stalled_hook(store_url: str) -> None:
    app = Conveyor(store_url)
    recorder = Recorder()
    app.use(recorder)

    @app.task
    async def work() -> None: ...

    async with app:
        handle = await work.enqueue()
        await app.backend.claim(slots=[QueueSlots(("default",), 1)], worker_id="gone", lease_ms=50)
        app.clock.advance(1)
        settings = WorkerSettings(reclaim_interval_s=0.1, lease_s=0.3)
        worker = Worker(app, settings)
        running = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: _has(recorder, ("stalled", handle.id, "False")))
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)


def test_use_takes_only_middleware(sqlite_url: str) -> None:
    with pytest.raises(InvalidInput, match="middleware"):
        Conveyor(sqlite_url).use(object())  # type: ignore[arg-type]


class Stamp(Middleware):
    """Adds a header to every job, and a priority: what enqueuing may change."""

    async def enqueuing(self, jobs: list[NewJob]) -> list[NewJob]:
        stamped = with_headers(jobs, {"tenant": "acme"})
        return [msgspec.structs.replace(job, priority=7) for job in stamped]


class Swap(Middleware):
    """A faulty hook: it replaces the jobs with others."""

    async def enqueuing(self, jobs: list[NewJob]) -> list[NewJob]:
        return [msgspec.structs.replace(job, id=f"other-{job.id}") for job in jobs]


class Raises(Middleware):
    async def enqueuing(self, jobs: list[NewJob]) -> list[NewJob]:
        raise RuntimeError("a hook's own bug")


async def test_enqueuing_changes_the_jobs_written(store_url: str) -> None:
    app = Conveyor(store_url)
    recorder = Recorder()
    for middleware in (Raises(), Swap(), Stamp(), recorder):  # the faulty ones change nothing
        app.use(middleware)

    @app.task
    async def work() -> None: ...

    async with app:
        handles = await app.enqueue_many([work.call(), work.call()])
        flow = await app.add_flow(chain(work.call(), work.call()))
        for handle in [*handles, flow]:
            job = await app.get_job(handle.id)
            assert job.options.headers == {"tenant": "acme"}
            assert job.priority == 7
        enqueued = [job_id for hook, job_id, _ in recorder.seen if hook == "enqueued"]
        assert enqueued[:2] == [h.id for h in handles]  # the written jobs, under their own ids
        counts = await app.counts("default")
        assert counts[JobState.WAITING] + counts[JobState.WAITING_CHILDREN] == 4  # no more
        assert await app.backend.get_job(job_id=f"other-{handles[0].id}") is None
