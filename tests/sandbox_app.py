"""Task functions for ``tests/test_sandbox.py``.

They live at the top level of an importable module because a sandbox child
imports a function by its module and name. Each test registers the ones it
needs on its own app: ``app.task(sandbox=True)(sandbox_app.whoami)``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor import Conveyor, NonRetryable, Retry, current_job

GATE_WAIT_S = 20.0


def whoami(a: int, b: int) -> dict[str, int]:
    return {"pid": os.getpid(), "sum": a + b}


async def whoami_async(word: str) -> dict[str, object]:
    await asyncio.sleep(0)
    return {"pid": os.getpid(), "word": word.upper()}


def doubled(fn: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        return 2 * fn(*args, **kwargs)

    return wrapper


@doubled
def add_doubled(a: int, b: int) -> int:
    """Decorated with functools.wraps: the child must run the wrapper too."""
    return a + b


def spin_with_grandchild() -> None:
    """Starts a grandchild, says which processes to look for, then never returns."""
    grandchild = subprocess.Popen(["sleep", "600"])
    current_job().log(f"pids {os.getpid()} {grandchild.pid}")
    while True:
        pass


def crash(code: int) -> None:
    os._exit(code)


def report_then_wait(gate: str) -> str:
    """Reports, then waits until the file ``gate`` exists."""
    current_job().progress(30, stage="halfway")
    current_job().log("started")
    deadline = time.monotonic() + GATE_WAIT_S
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.01)
    current_job().progress(100, stage="done")
    current_job().log("finished")
    return "ok"


def refuse() -> None:
    raise NonRetryable("bad input")


def always_fails() -> None:
    raise ValueError("boom")


def later() -> None:
    raise Retry("not yet", delay=120)


def count(n: int) -> int:
    return n


def total(previous: int, extra: int) -> dict[str, int]:
    """A chain step: the previous step's result, and what the children saw."""
    children = current_job().children
    return {"sum": previous + extra, "children": len(children), "ok": children.succeeded}


def rate_limited() -> None:
    from conveyor import RateLimited

    if current_job().job.attempts == 1 and not current_job().job.progress:
        current_job().progress(1)
        raise RateLimited(60, group=True)


def misnamed() -> None:
    """A function the child cannot find under its recorded name."""


misnamed.__qualname__ = "not_here"


# For a worker started through the CLI (``conveyor worker tests.sandbox_app:app``);
# the store comes from ``CONVEYOR_URL``.
app = Conveyor()
app.task(sandbox=True)(spin_with_grandchild)
