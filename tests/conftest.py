"""Shared fixtures: real SQLite files in a temporary directory, deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from conveyor import Clock, Conveyor, Worker, WorkerSettings

from .redis_server import RedisCluster, RedisServer


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'conveyor.db'}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the session; tests that break it use their own."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


STORES = ("sqlite", "redis")  # what a test using store_url runs on, unless its module sets STORES
CONFORMANCE_STORES = (*STORES, "redis_cluster")  # tests/conformance/: every store


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One ``store_url`` fixture for every test, run on the stores its module
    names in ``STORES`` (else the conformance suite's or the default ones)."""
    if "store" in metafunc.fixturenames:
        stores = getattr(metafunc.module, "STORES", None)
        if stores is None:
            in_conformance = "conformance" in metafunc.definition.path.parts
            stores = CONFORMANCE_STORES if in_conformance else STORES
        metafunc.parametrize("store", stores)


@pytest.fixture
def store_url(store: str, request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{store}_url")
    return url


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Conveyor]:
    """An app on a fresh store, with a clock that tests may move forward."""
    app = Conveyor(store_url, clock=Clock())
    async with app:
        yield app


StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(app: Conveyor) -> AsyncIterator[StartWorker]:
    """Starts in-process workers on ``app`` (``WorkerSettings`` as keywords);
    stops them all at the end of the test."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**settings: object) -> Worker:
        worker = Worker(app, WorkerSettings(**settings))  # type: ignore[arg-type]
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, _ in running:
        worker.stop()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in running)), 10)


@pytest.fixture(autouse=True)
def _no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # CONVEYOR_URL fills in for Conveyor(); tests choose their store themselves.
    monkeypatch.delenv("CONVEYOR_URL", raising=False)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, message: str = ""
) -> None:
    """Wait until ``check()`` is true, polling; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s {message}")
        await asyncio.sleep(0.01)


def db_digest(path: str | Path) -> str:
    """A digest of every row of every table, to prove an operation changed nothing."""
    conn = sqlite3.connect(path)
    try:
        digest = hashlib.sha256()
        for line in conn.iterdump():
            digest.update(line.encode())
        return digest.hexdigest()
    finally:
        conn.close()


def store_digest(url: str) -> str:
    """``db_digest`` for any store: on Redis, every key's type, value and
    whether it expires (a single node; the tests' private server)."""
    if url.startswith("sqlite:///"):
        return db_digest(url.removeprefix("sqlite:///"))
    client = redis.Redis.from_url(url)
    try:
        digest = hashlib.sha256()
        for key in sorted(client.scan_iter(count=1000)):
            persists = client.pttl(key) < 0
            digest.update(key + client.type(key) + bytes([persists]) + (client.dump(key) or b""))
        return digest.hexdigest()
    finally:
        client.close()
