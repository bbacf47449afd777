"""The health endpoints (conveyor.monitor.http): live without the store,
ready while the store answers, workers per queue; each flipped by a real
redis-server stopped and started again; Redis's memory as metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor
from conveyor.monitor import Monitor, metrics_app

from ..conftest import StartWorker, eventually
from ..redis_server import RedisServer
from .conftest import parse, scrape, value

pytestmark = pytest.mark.timeout(60)


async def test_a_queue_with_waiting_jobs_and_no_worker_is_unhealthy(
    app: Conveyor, http: httpx.AsyncClient, start_worker: StartWorker
) -> None:
    @app.task(queue="mail")
    async def send() -> None: ...

    @app.task(queue="held")
    async def hold() -> None: ...

    assert (await http.get("/workers/health")).status_code == 200  # nothing waits
    await send.enqueue()
    await hold.enqueue()
    await app.pause("held")  # paused on purpose: waiting there is no fault
    sick = await http.get("/workers/health")
    assert sick.status_code == 503
    report = sick.json()
    assert report["ok"] is False
    assert report["store_up"] is True
    by_queue = {q["queue"]: q for q in report["queues"]}
    assert by_queue["mail"] == {
        "queue": "mail",
        "workers": 0,
        "waiting": 1,
        "paused": False,
        "ok": False,
    }
    assert by_queue["held"]["ok"] is True

    worker = await start_worker(queues=("mail",), heartbeat_s=0.1)

    async def healthy() -> bool:
        return (await http.get("/workers/health")).status_code == 200

    await eventually(healthy, message="a worker for mail")
    report = (await http.get("/workers/health")).json()
    (info,) = report["workers"]
    assert info["queues"] == ["mail"]
    assert {q["queue"]: q["workers"] for q in report["queues"]}["mail"] == 1
    worker.pause()  # a paused worker serves nothing: mail has waiting jobs and no worker
    await send.enqueue()

    async def sick_again() -> bool:
        return (await http.get("/workers/health")).status_code == 503

    await eventually(sick_again, message="the paused worker's heartbeat")
    report = (await http.get("/workers/health")).json()
    assert report["workers"][0]["paused"] is True
    assert {q["queue"]: q["workers"] for q in report["queues"]}["mail"] == 0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to stop and start again."""
    private = RedisServer(tmp_path / "redis")
    private.start()
    yield private
    private.stop()


@pytest.fixture
async def redis_http(server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    app = Conveyor(server.url)
    transport = httpx.ASGITransport(app=metrics_app(Monitor(app, cache_s=0)))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
            yield client
    finally:
        await app.close()


async def test_health_follows_a_redis_server_that_stops_and_starts(
    server: RedisServer, redis_http: httpx.AsyncClient
) -> None:
    http = redis_http
    assert (await http.get("/health/ready")).json() == {"status": "ok"}
    assert value(await scrape(http), "conveyor_store_up") == 1

    server.kill()
    killed = time.monotonic()
    ready = await http.get("/health/ready")
    assert time.monotonic() - killed < 5  # the bound: 503 within 5 s
    assert ready.status_code == 503
    assert ready.json()["status"] == "down"
    assert ready.json()["error"]
    assert (await http.get("/health/live")).status_code == 200  # the process still answers
    samples = await scrape(http)  # 200 still: the scraper must see store_up 0
    assert value(samples, "conveyor_store_up") == 0
    assert not [k for k in samples if k[0].startswith("conveyor_queue")]  # no stale numbers
    workers = await http.get("/workers/health")
    assert workers.status_code == 503
    assert workers.json()["store_up"] is False

    server.start()

    async def ready_again() -> bool:
        return (await http.get("/health/ready")).status_code == 200

    await eventually(ready_again, timeout=15, message="ready after the restart")
    assert value(await scrape(http), "conveyor_store_up") == 1
    assert (await http.get("/workers/health")).status_code == 200


async def test_redis_memory_and_its_limit_are_reported(
    server: RedisServer, redis_http: httpx.AsyncClient
) -> None:
    samples = await scrape(redis_http)
    used = value(samples, "conveyor_store_memory_used_bytes")
    assert used is not None
    assert used > 100_000  # a redis-server uses about a megabyte idle
    assert value(samples, "conveyor_store_memory_limit_bytes") is None  # no maxmemory
    with server.client() as client:
        client.config_set("maxmemory", str(1 << 30))
    samples = parse((await redis_http.get("/metrics")).text)
    assert value(samples, "conveyor_store_memory_limit_bytes") == 1 << 30


async def test_sqlite_reports_no_memory(sqlite_url: str) -> None:
    app = Conveyor(sqlite_url)
    try:
        text = (await Monitor(app).exposition()).decode()
    finally:
        await app.close()
    assert "conveyor_store_up 1.0" in text
    assert "conveyor_store_memory" not in text
