"""The sandbox's child process: what crosses the pipe, and the child's side.

A child (started by ``SandboxPool`` in ``sandbox.py``, which says why and
how) leads a process group of its own, imports each job's function by its
module and qualified name, runs jobs one at a time and sends back their
reports and outcomes. Only JSON crosses the pipe, never pickle.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any, Literal

import msgspec

from conveyor.arguments import Signature, encode
from conveyor.backends.values import ProgressUpdate
from conveyor.context import JobContext, enter_job
from conveyor.importing import resolve
from conveyor.job import ChildOutcome, ChildOutcomes, Job
from conveyor.retry import NonRetryable, RateLimited, Retry, is_final

__all__ = ["ChildMessage", "Done", "Failed", "Ready", "Report", "Run", "child_main"]


# -- what crosses the pipe (JSON) ---------------------------------------------------


class Run(msgspec.Struct, frozen=True):
    """Worker to child: run this job."""

    module: str
    qualname: str
    job: Job
    payload: msgspec.Raw  # the arguments' JSON, as stored (a chain step's with its first)
    children: list[ChildOutcome] = []  # a flow parent's children's outcomes


class Ready(msgspec.Struct, frozen=True, tag="ready"):
    """Child to worker, once: it leads its own process group now."""


class Report(msgspec.Struct, frozen=True, tag="report"):
    update: ProgressUpdate


class Done(msgspec.Struct, frozen=True, tag="done"):
    result: msgspec.Raw  # the result's JSON


class Failed(msgspec.Struct, frozen=True, tag="failed"):
    error_type: str
    message: str
    traceback: str
    kind: Literal["error", "retry", "final", "limited"]  # final: never retried
    delay: float | None = None  # Retry(delay=...), RateLimited(delay)
    group: bool = False  # RateLimited(group=...)


ChildMessage = Ready | Report | Done | Failed
run_decoder = msgspec.json.Decoder(Run)
message_decoder: msgspec.json.Decoder[ChildMessage] = msgspec.json.Decoder(ChildMessage)


# -- the child's side ---------------------------------------------------------------


def child_main(conn: Connection) -> None:
    """A child's life: lead a new process group, then run jobs one at a time
    until the worker closes the pipe (or dies)."""
    os.setsid()
    sending = threading.Lock()  # results from this thread, reports from the reports loop

    def send(message: ChildMessage) -> None:
        data = encode(message)
        with sending:
            conn.send_bytes(data)

    # Reports go out from a loop of their own, so a sync function and an async
    # one alike run in the main thread and report while they run.
    reports = asyncio.new_event_loop()
    parent = multiprocessing.parent_process()
    if parent is not None:  # the worker died, even by SIGKILL: take our group with us
        reports.add_reader(parent.sentinel, os.killpg, 0, signal.SIGKILL)
    threading.Thread(target=reports.run_forever, name="conveyor-reports", daemon=True).start()

    running: list[str | None] = [None]  # the job whose reports may go out now

    def writer(job_id: str) -> Callable[[ProgressUpdate], Awaitable[bool]]:
        async def write(update: ProgressUpdate) -> bool:
            data = encode(Report(update))
            with sending:  # a report that lost the race with its job's outcome is dropped
                if running[0] != job_id:
                    return False
                conn.send_bytes(data)
            return True  # the worker's context applies the lease token

        return write

    functions: dict[tuple[str, str], tuple[Callable[..., Any], Signature]] = {}
    send(Ready())
    with asyncio.Runner() as runner:  # one loop for async jobs, kept between jobs
        while True:
            try:
                request = run_decoder.decode(conn.recv_bytes())
            except (EOFError, OSError):
                return  # the worker closed its end
            running[0] = request.job.id
            context = JobContext(
                request.job,
                loop=reports,
                write=writer(request.job.id),
                children=ChildOutcomes(request.children),
            )
            outcome = _serve(request, context, runner, functions)
            asyncio.run_coroutine_threadsafe(context.flush(), reports).result()
            data = encode(outcome)
            with sending:  # no report of this job may follow its outcome on the pipe
                running[0] = None
                conn.send_bytes(data)


def _serve(
    request: Run,
    context: JobContext,
    runner: asyncio.Runner,
    functions: dict[tuple[str, str], tuple[Callable[..., Any], Signature]],
) -> Done | Failed:
    try:
        key = (request.module, request.qualname)
        if key not in functions:
            functions[key] = _load(*key)
        fn, signature = functions[key]
        args, kwargs = signature.decode(request.payload)
        scope = contextvars.copy_context()
        scope.run(enter_job, context)
        if inspect.iscoroutinefunction(fn):
            result = runner.run(fn(*args, **kwargs), context=scope)
        else:
            result = scope.run(fn, *args, **kwargs)
        return Done(msgspec.Raw(encode(result)))
    except Exception as exc:  # every job error goes back; SystemExit ends the child
        if isinstance(exc, RateLimited):
            kind: Literal["error", "retry", "final", "limited"] = "limited"
        elif isinstance(exc, Retry):
            kind = "retry"
        elif is_final(exc):
            kind = "final"
        else:
            kind = "error"
        return Failed(
            error_type=type(exc).__name__,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
            kind=kind,
            delay=exc.delay if isinstance(exc, Retry | RateLimited) else None,
            group=isinstance(exc, RateLimited) and exc.group,
        )


def _load(module: str, qualname: str) -> tuple[Callable[..., Any], Signature]:
    try:
        target = resolve(module, qualname)
        return target, Signature(target)
    except Exception as exc:
        raise NonRetryable(
            f"cannot import {module}.{qualname} in the sandbox process: {type(exc).__name__}: {exc}"
        ) from exc
