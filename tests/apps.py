"""A small app for tests that start real worker processes through the CLI.

The store comes from ``CONVEYOR_URL``. Tasks append to an execution log
(``CONVEYOR_TEST_LOG``), a file outside the store, so tests can see what ran,
where and how often.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from conveyor import Conveyor, current_job


def record(event: str) -> None:
    path = os.environ.get("CONVEYOR_TEST_LOG")
    if path:
        job = current_job()
        line = f"{event} {job.id} {os.getpid()} {job.attempt} {time.monotonic():.6f}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def add(a: int, b: int) -> int:
    record("start")
    return a + b


async def nap(seconds: float) -> float:
    import asyncio

    record("start")
    await asyncio.sleep(seconds)
    record("end")
    return seconds


def nap_first_time(seconds: float) -> str:
    """Sleeps on its first run; returns at once once it has stalled."""
    record("start")
    if current_job().job.stalls == 0:
        time.sleep(seconds)
    record("end")
    return "done"


async def hog(seconds: float, how: str) -> str:
    """Keeps its worker busy without awaiting: ``block`` sleeps on the event
    loop's thread, ``cpu`` spins in pure Python."""
    record("start")
    deadline = time.monotonic() + seconds
    if how == "block":
        time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    else:
        while time.monotonic() < deadline:
            sum(range(1000))
    record("end")
    return how


def doze(seconds: float) -> str:
    """A plain def: runs in the worker's thread pool, and cannot be stopped."""
    record("start")
    time.sleep(seconds)
    record("end")
    return "rested"


def poison() -> None:
    """Kills the worker process that runs it, every time."""
    record("start")
    os.kill(os.getpid(), signal.SIGKILL)


async def chatty(message: str) -> None:
    """Logs on its own logger, as job code does; the worker adds the job's context."""
    logging.getLogger("tests.apps").warning(message)


def build(url: str | None = None) -> Conveyor:
    app = Conveyor(url)
    for fn in (add, nap, nap_first_time, hog, doze, poison, chatty):
        app.task(fn)
    return app


if os.environ.get("CONVEYOR_TEST_IMPORT_S"):  # a slow app to load
    with open(os.environ["CONVEYOR_TEST_LOG"], "a") as log:
        log.write("importing\n")
    time.sleep(float(os.environ["CONVEYOR_TEST_IMPORT_S"]))
app = build()  # what `conveyor worker tests.apps:app` runs, on CONVEYOR_URL
