"""The worker in-process: results, retries and backoff (on a moved clock, never
slept through), errors that must not retry, timeouts, leases, cancel, concurrency."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from conveyor import (
    Conveyor,
    Job,
    JobHandle,
    NonRetryable,
    Retry,
    Worker,
    WorkerSettings,
    current_job,
)

from .conftest import StartWorker, eventually


async def state_is(app: Conveyor, job_id: str, *states: str) -> bool:
    return (await app.get_job(job_id)).state in states


async def test_async_and_sync_tasks_complete_with_results(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def add(a: int, b: int = 1) -> int:
        return a + b

    @app.task
    def shout(word: str) -> str:
        assert threading.current_thread() is not threading.main_thread()
        return word.upper()

    first = await add.enqueue(2, b=40)
    second = await shout.enqueue("hey")
    await start_worker()
    assert (await first.wait(10)).result == 42
    done = await second.wait(10)
    assert (done.state, done.result, done.attempts) == ("completed", "HEY", 1)


async def test_progress_and_logs_from_a_running_job_are_readable(
    app: Conveyor, start_worker: StartWorker
) -> None:
    release = asyncio.Event()

    @app.task
    async def report() -> None:
        current_job().progress(30, stage="query")
        current_job().log("querying")
        await release.wait()
        current_job().progress(100, stage="done")

    @app.task
    def report_sync() -> None:
        for pct in (10, 20, 70):
            current_job().progress(pct)
        current_job().log("from a thread")

    handle = await report.enqueue()
    sync_handle = await report_sync.enqueue()
    await start_worker(concurrency=2)

    async def shows_progress() -> bool:
        job = await app.get_job(handle.id)
        return job.progress == 30 and job.progress_detail == {"stage": "query"}

    await eventually(shows_progress)
    assert [e.message for e in await app.get_logs(handle.id)] == ["querying"]
    release.set()
    job = await handle.wait(10)
    assert job.progress == 100 and job.progress_detail == {"stage": "done"}
    sync_job = await sync_handle.wait(10)
    assert sync_job.progress == 70
    assert [e.message for e in await app.get_logs(sync_handle.id)] == ["from a thread"]


async def test_progress_with_bad_values_fails_the_job_with_a_named_field(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def bad_detail() -> None:
        current_job().progress(10, handle=object())

    @app.task
    async def bad_percent() -> None:
        current_job().progress(101)

    detail = await bad_detail.enqueue()
    percent = await bad_percent.enqueue()
    await start_worker()
    assert (await detail.wait(10)).error == (
        "InvalidInput: detail: is not JSON-serializable: "
        "objects of type object are not JSON-serializable"
    )
    assert (await percent.wait(10)).error == "InvalidInput: progress: must be between 0 and 100"


async def test_failure_retries_after_backoff_on_the_store_clock(
    app: Conveyor, start_worker: StartWorker
) -> None:
    attempts: list[int] = []

    @app.task(retries=2, backoff=Retry.fixed(30))
    async def flaky() -> str:
        attempts.append(current_job().attempt)
        if len(attempts) == 1:
            raise ConnectionError("upstream down")
        return "ok"

    handle = await flaky.enqueue()
    await start_worker()
    await eventually(lambda: state_is(app, handle.id, "delayed"))
    job = await app.get_job(handle.id)
    assert job.error == "ConnectionError: upstream down" and "upstream down" in (
        job.traceback or ""
    )
    wait_s = (job.run_at.timestamp() * 1000 - app.clock.now_ms()) / 1000
    assert 25 < wait_s <= 30
    app.clock.advance(31)
    done = await handle.wait(10)
    assert (done.state, done.result, done.attempts, attempts) == ("completed", "ok", 2, [1, 2])
    assert done.error is None


async def test_exponential_backoff_grows_and_exhausted_job_fails(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task(retries=2, backoff=Retry.exponential(10, jitter=False))
    async def broken() -> None:
        raise ValueError("always")

    handle = await broken.enqueue()
    await start_worker()
    for attempt, expected in ((1, 10), (2, 20)):

        async def failed_attempt(attempt: int = attempt) -> bool:
            job = await app.get_job(handle.id)
            return job.state == "delayed" and job.attempts == attempt

        await eventually(failed_attempt)
        job = await app.get_job(handle.id)
        wait_s = (job.run_at.timestamp() * 1000 - app.clock.now_ms()) / 1000
        assert expected - 3 < wait_s <= expected
        app.clock.advance(expected + 1)
    job = await handle.wait(10)
    assert (job.state, job.attempts, job.error) == ("failed", 3, "ValueError: always")


async def test_retry_with_delay_and_non_retryable(app: Conveyor, start_worker: StartWorker) -> None:
    @app.task(retries=5)
    async def later() -> None:
        if current_job().attempt == 1:
            raise Retry("not yet", delay=120)

    @app.task(retries=5)
    async def hopeless() -> None:
        raise NonRetryable("bad input")

    soon = await later.enqueue()
    never = await hopeless.enqueue()
    await start_worker()
    job = await never.wait(10)
    assert (job.state, job.attempts, job.error) == ("failed", 1, "NonRetryable: bad input")
    await eventually(lambda: state_is(app, soon.id, "delayed"))
    job = await app.get_job(soon.id)
    assert 115 < (job.run_at.timestamp() * 1000 - app.clock.now_ms()) / 1000 <= 120
    app.clock.advance(121)
    assert (await soon.wait(10)).state == "completed"


async def test_async_timeout_fails_the_attempt(app: Conveyor, start_worker: StartWorker) -> None:
    @app.task(timeout=0.2)
    async def slow() -> None:
        await asyncio.sleep(30)

    handle = await slow.enqueue()
    await start_worker()
    job = await handle.wait(10)
    assert job.state == "failed" and job.error == "JobTimeout: timed out after 0.2s"


async def test_sync_timeout_is_soft_and_late_result_is_dropped(
    app: Conveyor, start_worker: StartWorker
) -> None:
    finished = threading.Event()

    @app.task(timeout=0.2)
    def slow() -> str:
        time.sleep(0.6)
        finished.set()
        return "late"

    handle = await slow.enqueue()
    worker = await start_worker()
    job = await handle.wait(10)
    assert job.state == "failed" and "timed out" in (job.error or "")
    await asyncio.to_thread(finished.wait, 5)
    # The loop has seen the thread return (its slot is free again): had the
    # worker kept the late result, it would have written it by now.
    await eventually(lambda: _true(not worker._slots.outliving))
    after = await app.get_job(handle.id)
    assert (after.state, after.result, after.finished_at) == ("failed", None, job.finished_at)


async def run_on_worker_of(other: Conveyor, handle: JobHandle) -> Job:
    """Run a worker of another app (other tasks, same store) until the job ends."""
    worker = Worker(other, WorkerSettings())
    running = asyncio.create_task(worker.run())
    try:
        return await handle.wait(10)
    finally:
        worker.stop()
        await running
        await other.close()


async def test_arguments_that_no_longer_match_fail_without_retry(
    app: Conveyor, store_url: str
) -> None:
    @app.task(name="convert", retries=3)
    async def old(n: int) -> None: ...

    handle = await old.enqueue(5)
    newer = Conveyor(store_url)

    @newer.task(name="convert", retries=3)
    async def new(n: str) -> None: ...

    job = await run_on_worker_of(newer, handle)
    assert (job.state, job.attempts) == ("failed", 1)
    assert job.error is not None and "InvalidArguments: n: Expected `str`" in job.error


async def test_unknown_task_fails_without_retry(app: Conveyor, store_url: str) -> None:
    @app.task(retries=3)
    async def only_here() -> None: ...

    handle = await only_here.enqueue()
    job = await run_on_worker_of(Conveyor(store_url), handle)
    assert job.state == "failed" and "no task named 'only_here'" in (job.error or "")


async def test_lease_is_renewed_while_a_job_outlives_it(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def long() -> str:
        await asyncio.sleep(1.5)
        return "done"

    handle = await long.enqueue()
    await start_worker(lease_s=0.5, reclaim_interval_s=0.1)
    job = await handle.wait(10)
    assert (job.state, job.stalls, job.attempts) == ("completed", 0, 1)


async def test_cancelling_a_running_job_stops_it(app: Conveyor, start_worker: StartWorker) -> None:
    stopped = asyncio.Event()

    @app.task
    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    handle = await forever.enqueue()
    await start_worker()  # the default 30 s lease: renewals every 2 s notice the cancel
    await eventually(lambda: state_is(app, handle.id, "active"))
    assert await app.cancel(handle.id)
    await asyncio.wait_for(stopped.wait(), 3.5)
    assert (await app.get_job(handle.id)).state == "cancelled"


async def test_concurrency_limits_jobs_running_at_once(
    app: Conveyor, start_worker: StartWorker
) -> None:
    running = 0
    peak = 0

    @app.task
    async def busy(n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    handles = await app.enqueue_many([busy.call(i) for i in range(12)])
    await start_worker(concurrency=3)
    for handle in handles:
        assert (await handle.wait(10)).state == "completed"
    assert peak == 3


async def test_graceful_stop_releases_jobs_still_running_at_the_deadline(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def stuck() -> None:
        await asyncio.sleep(60)

    handle = await stuck.enqueue()
    worker = await start_worker(shutdown_grace_s=0.2)
    await eventually(lambda: state_is(app, handle.id, "active"))
    worker.stop()
    await eventually(lambda: state_is(app, handle.id, "waiting"))
    job = await app.get_job(handle.id)
    assert (job.attempts, job.stalls) == (0, 0)


async def test_a_sync_job_past_the_grace_keeps_its_lease_until_its_thread_ends(
    app: Conveyor, start_worker: StartWorker
) -> None:
    """Its thread cannot be stopped: it is not released to run elsewhere, and
    its lease is renewed after the worker stopped, until the thread ends."""
    gate = threading.Event()
    runs: list[str] = []

    @app.task
    def busy() -> None:
        runs.append("start")
        gate.wait(20)
        runs.append("end")

    renewals = [0]
    real = app.backend.extend_leases_blocking

    def counting(**kwargs: Any) -> Any:
        renewals[0] += 1
        return real(**kwargs)

    app.backend.extend_leases_blocking = counting  # type: ignore[method-assign]
    handle = await busy.enqueue()
    worker = await start_worker(shutdown_grace_s=0.1, lease_s=0.6)
    await eventually(lambda: _true(runs == ["start"]))
    worker.stop()
    await eventually(lambda: _true(worker.threads_running == 1))
    other = await start_worker(lease_s=0.6, reclaim_interval_s=0.1)
    after = renewals[0]
    await eventually(lambda: _true(renewals[0] >= after + 6))  # 1.2 s: twice the lease
    job = await app.get_job(handle.id)
    assert (runs, job.state, job.worker_id) == (["start"], "active", worker.id)
    gate.set()  # the thread ends; its lease lapses, and the other worker runs the job
    job = await handle.wait(10)
    assert (job.state, job.stalls, runs) == ("completed", 1, ["start", "end", "start", "end"])
    assert worker.threads_running == 0 and other.processed == 1


async def test_a_job_reclaimed_by_the_same_worker_is_tracked_apart_from_its_old_run(
    app: Conveyor, start_worker: StartWorker
) -> None:
    first_gate, second_gate = threading.Event(), threading.Event()
    runs: list[int] = []

    @app.task
    def blocker() -> int:
        runs.append(len(runs))
        (first_gate if len(runs) == 1 else second_gate).wait(20)
        return len(runs)

    handle = await blocker.enqueue()
    worker = await start_worker(concurrency=2, lease_s=0.3)
    await eventually(lambda: _true(len(runs) == 1))
    assert await app.cancel(handle.id)  # its thread cannot stop: the old run lives on
    assert await app.retry(handle.id)
    await eventually(lambda: _true(len(runs) == 2))  # the same worker claimed it again
    first_gate.set()  # the old run ends while the new one still runs
    await eventually(lambda: _true(worker.active == 1 and not worker._slots.outliving))
    second_gate.set()
    job = await handle.wait(10)
    assert (job.state, job.result, runs) == ("completed", 2, [0, 1])


async def _true(value: bool) -> bool:
    return value


async def test_a_timed_out_thread_keeps_its_slot_until_it_returns(
    app: Conveyor, start_worker: StartWorker
) -> None:
    events: list[tuple[str, float]] = []

    @app.task(timeout=0.2)
    def overrun(name: str) -> None:
        events.append((f"start {name}", time.monotonic()))
        if name == "a":
            time.sleep(1.0)
        events.append((f"end {name}", time.monotonic()))

    first = await overrun.enqueue("a")
    second = await overrun.enqueue("b")
    await start_worker(concurrency=1)
    assert (await first.wait(10)).state == "failed"
    assert (await second.wait(10)).state == "completed"
    order = [name for name, _ in events]
    assert order == ["start a", "end a", "start b", "end b"]  # b waited for a's thread


async def test_a_job_not_started_within_its_ttl_expires_without_running(
    app: Conveyor, start_worker: StartWorker
) -> None:
    ran: list[str] = []

    @app.task
    async def report(name: str) -> None:
        ran.append(name)

    stale = await report.configure(ttl=60).enqueue("stale")
    delayed = await report.configure(delay=30, ttl=60).enqueue("delayed")
    later = await report.configure(ttl=600).enqueue("later")
    app.clock.advance(61)  # the store's clock: the 60 s ttls have passed, not the 600 s one
    await start_worker()
    for handle in (stale, delayed, later):
        await handle.wait(10)
    stale_job, later_job = await app.get_job(stale.id), await app.get_job(later.id)
    assert (stale_job.state, stale_job.error, stale_job.attempts) == ("cancelled", "expired", 0)
    assert (await app.get_job(delayed.id)).error == "expired"  # counted from the enqueue
    assert (later_job.state, ran) == ("completed", ["later"])


async def test_a_retry_is_not_expired_by_the_ttl_of_its_first_start(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task(retries=1, backoff=Retry.fixed(120))
    async def flaky() -> str:
        if current_job().attempt == 1:
            raise ConnectionError("upstream down")
        return "ok"

    handle = await flaky.configure(ttl=60).enqueue()
    await start_worker()
    await eventually(lambda: state_is(app, handle.id, "delayed"))
    app.clock.advance(121)  # past the ttl too, but the job has started before
    assert (await handle.wait(10)).result == "ok"


async def _beats(app: Conveyor, worker: Worker, more: int) -> None:
    """Until the worker's heartbeat has been written ``more`` times again."""
    seen = []

    async def beaten() -> bool:
        (info,) = await app.workers()
        if not seen or info.last_seen_ms != seen[-1]:
            seen.append(info.last_seen_ms)
        return len(seen) > more

    await eventually(beaten, timeout=10)


async def test_a_paused_worker_claims_nothing_and_keeps_its_running_jobs(
    app: Conveyor, start_worker: StartWorker
) -> None:
    release = asyncio.Event()

    @app.task
    async def slow() -> str:
        await release.wait()
        return "done"

    @app.task
    async def quick() -> str:
        return "quick"

    running = await slow.enqueue()
    worker = await start_worker(heartbeat_s=0.1, lease_s=1.0)
    await eventually(lambda: state_is(app, running.id, "active"))
    worker.pause()
    waiting = await quick.enqueue()
    await eventually(lambda: _paused(app, True))
    await _beats(app, worker, 3)  # several beats (and lease renewals of 1 s leases) later
    assert await state_is(app, waiting.id, "waiting")
    assert await state_is(app, running.id, "active")  # its lease renewed all along
    release.set()
    assert (await running.wait(5)).result == "done"
    assert await state_is(app, waiting.id, "waiting")
    worker.resume()
    assert (await waiting.wait(5)).result == "quick"
    await eventually(lambda: _paused(app, False))


async def _paused(app: Conveyor, paused: bool) -> bool:
    return [info.paused for info in await app.workers()] == [paused]


async def test_a_worker_pauses_and_resumes_on_the_stores_command(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def quick() -> str:
        return "quick"

    worker = await start_worker(heartbeat_s=0.1)
    await eventually(lambda: _paused(app, False))
    assert await app.pause_worker(worker.id)
    await eventually(lambda: _paused(app, True))
    assert worker.paused
    handle = await quick.enqueue()
    await _beats(app, worker, 2)
    assert await state_is(app, handle.id, "waiting")
    assert await app.resume_worker(worker.id)
    assert (await handle.wait(5)).result == "quick"
    assert not worker.paused
    assert not await app.pause_worker("no-such-worker")
