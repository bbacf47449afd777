"""The app that the chaos suite's worker processes run
(``conveyor worker tests.chaos_app:app``).

The store comes from ``CONVEYOR_URL``. Each run of ``step`` appends a
``start`` line and, once its work is done, an ``end`` line to the execution
log named by ``CONVEYOR_TEST_LOG``, a file outside the store::

    start <job_id> <pid> <attempt> <monotonic seconds>

Each line is one ``write`` on an ``O_APPEND`` descriptor, so lines of
concurrent processes never interleave and a SIGKILL never leaves half a
line. The time is ``time.monotonic()``, one system-wide clock on Linux, so it
can be compared with the moments the test killed a worker.

Completed jobs are kept without limit (``keep_completed=Retention()``): the
checker reads every job's final state from the store, and the default
retention (the newest 1000) would remove most of them.
"""

from __future__ import annotations

import asyncio
import os
import time

from conveyor import Conveyor, Retention, current_job


def record(event: str) -> None:
    path = os.environ.get("CONVEYOR_TEST_LOG")
    if not path:
        return
    job = current_job()
    line = f"{event} {job.id} {os.getpid()} {job.attempt} {time.monotonic():.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def step(n: int, ms: float) -> int:
    """A short job: logs its start, works for ``ms`` milliseconds, logs its end."""
    record("start")
    await asyncio.sleep(ms / 1000)
    record("end")
    return n


def build(url: str | None = None) -> Conveyor:
    """The app on ``url`` (else ``CONVEYOR_URL``); the test's own
    producer builds one too, so both sides register the same task."""
    app = Conveyor(url)
    app.task(keep_completed=Retention())(step)
    return app


app = build()  # what `conveyor worker tests.chaos_app:app` runs, on CONVEYOR_URL
