"""``conveyor worker --metrics-port`` and ``conveyor metrics``, run as a user
would: real processes, real HTTP on loopback, a port already in use."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor import Conveyor, JobState

from .. import apps
from ..conftest import eventually
from ..processes import ROOT, Workers, exited
from ..redis_server import free_port
from .conftest import parse, value

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def workers(sqlite_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(sqlite_url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[Conveyor]:
    async with apps.build(sqlite_url) as app:
        yield app


async def _get(port: int, path: str) -> httpx.Response | None:
    """``path`` on loopback ``port``; None while nothing listens there."""
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            return await client.get(path)
    except httpx.TransportError:
        return None


async def _served(port: int, path: str = "/health/live") -> httpx.Response:
    async def up() -> bool:
        return await _get(port, path) is not None

    await eventually(up, timeout=20, message=f"port {port} serving")
    response = await _get(port, path)
    assert response is not None
    return response


async def test_a_worker_serves_its_metrics_until_it_stops(app: Conveyor, workers: Workers) -> None:
    port = free_port()
    await app.enqueue_many([app.tasks["add"].call(i, 1) for i in range(20)])
    proc = workers.start("--metrics-port", str(port))

    async def all_done() -> bool:
        return (await app.counts("default"))[JobState.COMPLETED] == 20

    await eventually(all_done, timeout=30)
    samples = parse((await _served(port, "/metrics")).text)
    assert value(samples, "conveyor_queue_jobs", queue="default", state="completed") == 20
    assert value(samples, "conveyor_workers_alive", queue="default") == 1
    # the histograms are the worker process's own: it ran all 20
    labels = {"queue": "default", "task": "add", "outcome": "completed"}
    assert value(samples, "conveyor_job_duration_seconds_count", **labels) == 20
    assert (await _served(port, "/workers/health")).status_code == 200

    proc.send_signal(signal.SIGTERM)
    assert await exited(proc) == 0
    assert await _get(port, "/health/live") is None  # the server went with the worker


def _conveyor(*argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("command", ["worker", "metrics"])
async def test_a_port_in_use_exits_2_with_one_line(app: Conveyor, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        if command == "worker":
            argv = ["worker", "tests.apps:app", "--metrics-port", port]
        else:
            argv = ["metrics", "--app", "tests.apps:app", "--port", port]
        proc = _conveyor(*argv, env={"CONVEYOR_URL": app.url, "PATH": "/usr/bin:/bin"})
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"conveyor: error: cannot listen on 127.0.0.1:{port}: ")


async def test_metrics_serves_a_store_and_stops_on_sigterm(app: Conveyor) -> None:
    await app.tasks["add"].enqueue(1, 2)
    port = free_port()
    proc = _conveyor("metrics", "--url", app.url, "--port", str(port))
    try:
        assert (await _served(port, "/health/ready")).json() == {"status": "ok"}
        samples = parse((await _served(port, "/metrics")).text)
        assert value(samples, "conveyor_queue_waiting", queue="default") == 1
        # no worker takes the waiting job: the workers' health says so
        assert (await _served(port, "/workers/health")).status_code == 503
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(asyncio.to_thread(proc.wait), 15) == 0
    finally:
        proc.kill()
        proc.communicate()


async def test_metrics_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing.db'}"
    proc = _conveyor("metrics", "--url", url, "--port", str(free_port()))
    _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 1
    assert stderr.strip() == f"conveyor: error: no store at {tmp_path / 'missing.db'}"
    assert not (tmp_path / "missing.db").exists()
