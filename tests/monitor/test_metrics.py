"""The Prometheus metrics (conveyor.monitor): the store's counts, totals and
workers, the worker's histograms, parsed back with prometheus_client's parser
and checked against what the jobs did; cached reads; labels that never carry
a job id or an error's text; mounting under a prefix."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conveyor import Backoff, Conveyor, JobState
from conveyor.middleware import Outcome
from conveyor.monitor import Monitor, metrics_app

from ..conftest import StartWorker, eventually
from .conftest import Samples, parse, scrape, value

STORES = ("sqlite", "redis", "redis_cluster")
pytestmark = pytest.mark.timeout(60)

SECRET = "do-not-label-me"


def _declare(app: Conveyor) -> None:
    @app.task(queue="mail")
    async def send(n: int) -> int:
        return n

    @app.task(queue="mail", retries=1, backoff=Backoff.fixed(0.01))
    async def bounce() -> None:
        raise ValueError(SECRET)

    @app.task(queue="pdf")
    async def render(n: int) -> int:
        return n


async def test_metrics_report_what_the_jobs_did(
    app: Conveyor, monitor: Monitor, http: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    _declare(app)
    send, bounce, render = (app.tasks[name] for name in ("send", "bounce", "render"))
    done = [await send.enqueue(n) for n in range(5)]
    failed = await bounce.enqueue()
    await app.pause("pdf")
    waiting = [await render.enqueue(n) for n in range(3)]
    await start_worker(queues=("mail", "pdf"))
    for handle in [*done, failed]:
        await handle.wait(10)
    # the worker's record is written at its start: wait for it to be seen
    await eventually(lambda: _alive(app), message="the worker's heartbeat")

    samples = await scrape(http)

    assert value(samples, "conveyor_store_up") == 1
    assert value(samples, "conveyor_queue_jobs", queue="mail", state="completed") == 5
    assert value(samples, "conveyor_queue_jobs", queue="mail", state="failed") == 1
    assert value(samples, "conveyor_queue_jobs", queue="pdf", state="waiting") == 3
    assert value(samples, "conveyor_queue_waiting", queue="pdf") == 3
    assert value(samples, "conveyor_queue_waiting", queue="mail") == 0
    assert value(samples, "conveyor_queue_paused", queue="pdf") == 1
    assert value(samples, "conveyor_queue_paused", queue="mail") == 0
    assert value(samples, "conveyor_dead_letter_jobs", queue="mail") == 1
    assert value(samples, "conveyor_workers_alive", queue="mail") == 1
    assert value(samples, "conveyor_workers_alive", queue="pdf") == 1
    for outcome, count in (("completed", 5), ("failed", 1), ("retried", 1), ("stalled", 0)):
        name = "conveyor_queue_processed_total"
        assert value(samples, name, queue="mail", outcome=outcome) == count, outcome
    assert value(samples, "conveyor_queue_processed_total", queue="pdf", outcome="completed") == 0
    # the job next in line has waited since its enqueue: measured on the store's clock
    head = await app.get_job(waiting[0].id)
    age = (await app.backend.now_ms()) / 1000 - head.run_at.timestamp()
    oldest = value(samples, "conveyor_queue_oldest_waiting_age_seconds", queue="pdf")
    assert oldest is not None
    assert 0 < oldest <= age + 0.001
    assert value(samples, "conveyor_queue_oldest_waiting_age_seconds", queue="mail") == 0

    # this process's worker ran the attempts: its histograms count each one
    def count(name: str, task: str, outcome: str) -> float | None:
        return value(samples, f"{name}_count", queue="mail", task=task, outcome=outcome)

    for name in ("conveyor_job_duration_seconds", "conveyor_job_wait_seconds"):
        assert count(name, "send", "completed") == 5
        assert count(name, "bounce", "retrying") == 1
        assert count(name, "bounce", "failed") == 1
    every = {"queue": "mail", "task": "send", "outcome": "completed", "le": "+Inf"}
    assert value(samples, "conveyor_job_duration_seconds_bucket", **every) == 5
    backend = app.url.split(":", 1)[0]
    (build,) = [k for k in samples if k[0] == "conveyor_build_info"]
    assert dict(build[1])["backend"] == backend
    memory = value(samples, "conveyor_store_memory_used_bytes")  # a Cluster's: its node's
    assert memory is None if backend == "sqlite" else memory is not None and memory > 0
    _assert_labels_are_names_only(samples, {*(h.id for h in [*done, failed, *waiting])})


async def _alive(app: Conveyor) -> bool:
    return bool(await app.workers(seen_within=30))


def _assert_labels_are_names_only(samples: Samples, job_ids: set[str]) -> None:
    labels = {(k, v) for _, pairs in samples for k, v in pairs}
    allowed_keys = {"queue", "task", "state", "outcome", "le", "version", "backend"}
    # and the process and Python collectors' own
    allowed_keys |= {"generation", "implementation", "major", "minor", "patchlevel"}
    assert {k for k, _ in labels} <= allowed_keys
    values = {v for _, v in labels}
    assert not values & job_ids
    assert not any(SECRET in v or "ValueError" in v for v in values)


async def test_many_scrapes_within_the_cache_read_the_store_once(app: Conveyor) -> None:
    _declare(app)
    monitor = Monitor(app, cache_s=3600)
    reads = []
    queues = app.backend.queues

    async def counted() -> list:  # type: ignore[type-arg]
        reads.append(1)
        return await queues()

    app.backend.queues = counted  # type: ignore[method-assign]
    await app.tasks["send"].enqueue(1)
    first = await asyncio.gather(*(monitor.exposition() for _ in range(10)))
    await app.tasks["send"].enqueue(2)  # not seen until the cache is read again
    again = await monitor.exposition()
    assert len(reads) == 1
    waiting = 'conveyor_queue_waiting{queue="mail"} 1.0'
    assert all(waiting in text.decode() for text in [*first, again])
    fresh = Monitor(app, cache_s=0)
    assert 'conveyor_queue_waiting{queue="mail"} 2.0' in (await fresh.exposition()).decode()


async def test_each_process_reports_the_stores_numbers(store_url: str, app: Conveyor) -> None:
    """Two monitors on two connections (as two processes would have) agree:
    the numbers come from the store, not from what one process saw."""
    _declare(app)
    for n in range(4):
        await app.tasks["send"].enqueue(n)
    other = Conveyor(store_url)
    try:
        mine, theirs = Monitor(app, cache_s=0), Monitor(other, cache_s=0)
        texts = [(await m.exposition()).decode() for m in (mine, theirs)]
    finally:
        await other.close()
    lines = [
        sorted(
            line
            for line in text.splitlines()
            if line.startswith("conveyor_queue") and "oldest" not in line  # ages move on
        )
        for text in texts
    ]
    assert lines[0] == lines[1]
    assert 'conveyor_queue_jobs{queue="mail",state="waiting"} 4.0' in lines[0]


async def test_a_queue_only_a_worker_serves_is_reported_empty(
    app: Conveyor, http: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    await start_worker(queues=("quiet",))
    await eventually(lambda: _alive(app))
    samples = await scrape(http)
    assert value(samples, "conveyor_workers_alive", queue="quiet") == 1
    assert value(samples, "conveyor_queue_waiting", queue="quiet") == 0
    assert value(samples, "conveyor_queue_jobs", queue="quiet", state=JobState.ACTIVE.value) == 0


async def test_the_app_mounts_under_a_prefix(monitor: Monitor) -> None:
    transport = httpx.ASGITransport(app=metrics_app(monitor), root_path="/ops")
    async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
        assert (await client.get("/ops/health/live")).json() == {"status": "ok"}
        assert (await client.get("/ops/metrics")).status_code == 200
        missing = await client.get("/ops/nothing")
        assert missing.status_code == 404
        assert "error" in missing.json()


async def test_only_get_and_head_are_served(http: httpx.AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE"):
        response = await http.request(method, "/metrics")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["error"] == f"{method} not allowed"
    head = await http.head("/health/live")
    assert head.status_code == 200
    assert head.content == b""


async def test_histograms_put_each_attempt_in_its_buckets(app: Conveyor) -> None:
    @app.task(queue="pdf")
    async def render() -> None: ...

    monitor = Monitor(app, cache_s=0)
    job = await app.get_job((await render.enqueue()).id)
    for run_s in (0.3, 0.3, 42.0, 7200.0):  # the last one past every bound
        await monitor.jobs.finished(job, Outcome(ending="completed", run_s=run_s, wait_s=0.0))
    samples = parse((await monitor.exposition()).decode())
    labels = {"queue": "pdf", "task": "render", "outcome": "completed"}
    name = "conveyor_job_duration_seconds"

    def bucket(le: str) -> float | None:
        return value(samples, f"{name}_bucket", le=le, **labels)

    assert (bucket("0.25"), bucket("0.5"), bucket("30"), bucket("60")) == (0, 2, 2, 3)
    assert (bucket("3600"), bucket("+Inf")) == (3, 4)
    assert value(samples, f"{name}_count", **labels) == 4
    assert value(samples, f"{name}_sum", **labels) == pytest.approx(7242.6)
    assert value(samples, "conveyor_job_wait_seconds_bucket", le="0.005", **labels) == 4
