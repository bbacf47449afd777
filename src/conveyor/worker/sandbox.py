"""Sandboxed tasks: ``@app.task(sandbox=True)`` runs each job in a child
process, so a timeout or a cancel is a hard stop.

A thread cannot be stopped from outside, so a plain sync task's timeout is
soft: its attempt fails and its thread runs on. A sandboxed task runs in a
child process of a small pool instead. At the job's timeout (the job fails
with ``JobTimeout``), on cancel, on a lost lease and at the end of the
shutdown grace, the child's whole process group gets SIGKILL (each child
leads a session of its own, so whatever it started dies with it), and the
next job gets a fresh child.

The pool: one child per running sandboxed job, so at most the worker's
concurrency, started on demand from ``multiprocessing``'s forkserver (never
``fork``: the worker has threads), reused between jobs (module state persists
from one job to the next), all killed when the worker stops; a child also
kills its group when the worker process dies, even by SIGKILL. Not
``ProcessPoolExecutor`` or ``multiprocessing.Pool``: neither can stop one
job, and one dead child breaks or hangs the whole pool. Each job is driven
from the worker by a thread of its own, which blocks on the child's pipe so
that the event loop never does.

How the child finds the function: by ``fn.__module__`` and
``fn.__qualname__``, imported in the child (a name bound to the ``Task`` that
``@app.task`` returns stands for its function). Importing by the app's path
(``myapp:app``) was rejected: a worker started in-process has no such path,
and the function's own names need no app in the child. So a sandboxed
function must live at the top level of an importable module. One defined
inside a function, a lambda, or one in ``__main__`` is refused at
registration with ``ConfigurationError``; one the child still cannot import
fails its job at once, without retries, with the import error as its message.
Each child runs the module's top-level code when it imports it (creating a
``Conveyor`` there is cheap: it connects nothing).

Only JSON crosses the pipe, never pickle. The job and its encoded arguments
go to the child, where the task's signature decodes them; back come
``current_job()``'s progress and log lines, which the worker writes through
the job's own context (so with its lease token), then the encoded result, or
the error's type name, message and traceback. The worker re-raises an error
under the child's type name (``ValueError: boom`` reads the same as from an
in-process task), as a ``Retry`` with its delay or a ``NonRetryable`` when it
was one, so retries behave as for any task; the child's traceback is the
exception's cause.

Limits: a child that dies (``os._exit``, a signal, the OOM killer) fails its
own job, retried like any error, with ``SandboxError: sandbox process died
(exit code N)``; other children run on. ``logging`` is not configured in a
child (warnings and errors reach stderr); ``current_job().log()`` keeps lines
with the job. A process that the job starts in a session of its own escapes
the kill. As with any ``multiprocessing`` child, each child imports the
worker's main script (as ``__mp_main__``), so a script that starts a worker
itself needs an ``if __name__ == "__main__":`` guard (``conveyor worker``
does not). The forkserver and its resource tracker belong to
``multiprocessing`` and live as long as the worker process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

import msgspec

from conveyor.arguments import encode
from conveyor.backends.values import ClaimedJob, ProgressUpdate
from conveyor.context import JobContext
from conveyor.errors import (
    SandboxError,
)
from conveyor.importing import import_path
from conveyor.retry import NonRetryable, RateLimited, Retry
from conveyor.task import Task
from conveyor.worker.sandbox_child import (
    ChildMessage,
    Done,
    Failed,
    Ready,
    Report,
    Run,
    child_main,
    message_decoder,
)

__all__ = ["SandboxPool"]

log = logging.getLogger("conveyor.worker")

START_METHOD: Final = "forkserver"  # not fork: the worker has threads


class _Died(msgspec.Struct, frozen=True):
    """Not sent: what the worker concludes when the child is gone."""

    exit_code: int | None
    starting: bool  # before it was ready: its stderr tells why (an import in the child?)


# -- the worker's side ------------------------------------------------------------


class _Child:
    """One child process and the worker's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        assert process.pid is not None
        self.process = process
        self.conn = conn
        self.pid: int = process.pid
        self.leader = False  # it called setsid(): its pid is its process group's id

    def kill(self) -> None:
        """SIGKILL the child's process group (the child and what it started)."""
        try:
            if self.leader:
                os.killpg(self.pid, signal.SIGKILL)
            else:  # still starting: it runs no job code and leads no group yet
                os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # gone (its id reused by another user's)
            pass

    def receive(self) -> ChildMessage | None:
        """The child's next message; ``None`` once it has died or closed its pipe."""
        ready = multiprocessing.connection.wait([self.conn, self.process.sentinel])
        if self.conn not in ready:  # messages sent before dying are read first
            return None
        try:
            data = self.conn.recv_bytes()
        except (EOFError, OSError):
            return None
        return message_decoder.decode(data)


class _Checkout:
    """One job's use of a child. Guarded by the pool's lock: whichever comes
    first, the job's end or its abandonment (timeout, cancel), decides what
    happens to the child."""

    __slots__ = ("abandoned", "child", "finished")

    def __init__(self, child: _Child | None) -> None:
        self.child = child
        self.abandoned = False
        self.finished = False


class SandboxPool:
    """Child processes for a worker's sandboxed jobs: one per running job (a
    killed child may overlap its replacement for a moment) and at most ``size``
    idle ones; started on demand, reused, and killed by ``close()``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._starting = threading.Lock()  # multiprocessing's child bookkeeping is not thread-safe
        self._idle: list[_Child] = []
        self._live: set[_Child] = set()  # started and not yet reaped
        self._exchanges: set[threading.Thread] = set()
        self._closed = False
        self._at_exit = False

    async def run(
        self, task: Task[Any, Any], claimed: ClaimedJob, context: JobContext
    ) -> msgspec.Raw:
        """Run one job in a child: the result's JSON, or the job's error raised.
        Cancelling this (timeout, cancel, shutdown) kills the child at once."""
        module, qualname = import_path(task.fn)
        request = encode(
            Run(
                module,
                qualname,
                claimed.job,
                payload=msgspec.Raw(claimed.payload),
                children=list(context.children),
            )
        )
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise SandboxError("the worker's sandbox pool is closed")
            checkout = _Checkout(self._idle.pop() if self._idle else None)
        outcome: asyncio.Future[Done | Failed | _Died] = loop.create_future()
        # A daemon thread, not an executor's: a thread left waiting on a child
        # must never hold up the interpreter's exit.
        thread = threading.Thread(
            target=self._exchange,
            args=(checkout, request, context, loop, outcome),
            name=f"conveyor-sandbox:{claimed.job.id}",
            daemon=True,
        )
        with self._lock:
            self._exchanges.add(thread)
        thread.start()
        try:
            # Shielded: the thread ends by itself once its child is killed.
            reply = await asyncio.shield(outcome)
        except asyncio.CancelledError:
            self._abandon(checkout)
            raise
        if isinstance(reply, Done):
            return reply.result
        if isinstance(reply, Failed):
            raise _rebuild(reply)
        when = " while starting" if reply.starting else ""
        raise SandboxError(f"sandbox process died{when} (exit code {reply.exit_code})")

    async def close(self) -> None:
        """Kill every child and wait until all are reaped."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            live = list(self._live)
            exchanges = list(self._exchanges)
        for child in live:  # running ones too: their threads see them die and reap them
            child.kill()

        def reap() -> None:
            for child in idle:
                self._retire(child)
            for thread in exchanges:
                thread.join()

        await asyncio.to_thread(reap)
        if self._at_exit:
            atexit.unregister(self._kill_all)

    def _abandon(self, checkout: _Checkout) -> None:
        with self._lock:
            checkout.abandoned = True
            child = None if checkout.finished else checkout.child
        if child is not None:
            child.kill()

    def _exchange(
        self,
        checkout: _Checkout,
        request: bytes,
        context: JobContext,
        loop: asyncio.AbstractEventLoop,
        outcome: asyncio.Future[Done | Failed | _Died],
    ) -> None:
        """In its own thread: hand the job to a child, forward its reports and
        pass back how it ended."""
        try:
            result: Done | Failed | _Died | BaseException = self._talk(checkout, request, context)
        except BaseException as exc:  # a bug here must still end the job
            result = exc
        finally:
            with self._lock:
                self._exchanges.discard(threading.current_thread())
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, outcome, result)

    def _talk(
        self, checkout: _Checkout, request: bytes, context: JobContext
    ) -> Done | Failed | _Died:
        child = checkout.child
        reply: ChildMessage | None = None
        code: int | None = None
        try:
            if child is None:
                child = self._start(checkout)
            with self._lock:
                go = not (checkout.abandoned or self._closed)
            if go and not child.leader:
                reply = child.receive()
                child.leader = isinstance(reply, Ready)
                go = child.leader
            if go:
                child.conn.send_bytes(request)
                while isinstance(reply := child.receive(), Report | Ready):
                    if isinstance(reply, Report) and not checkout.abandoned:
                        _forward(reply.update, context)
        except (OSError, msgspec.DecodeError) as exc:  # a broken pipe, a garbled message
            log.warning("job %s: sandbox pipe failed: %s", context.id, exc)
            reply = None
        finally:
            with self._lock:
                checkout.finished = True
                healthy = isinstance(reply, Done | Failed)
                keep = healthy and not checkout.abandoned and not self._closed
                keep = keep and len(self._idle) < self.size
                if keep and child is not None:
                    self._idle.append(child)
            if child is not None and not keep:
                code = self._retire(child)
        if isinstance(reply, Done | Failed):
            return reply
        return _Died(code, starting=child is None or not child.leader)

    def _start(self, checkout: _Checkout) -> _Child:
        mp = multiprocessing.get_context(START_METHOD)
        with self._starting:
            ours, theirs = mp.Pipe()
            process = mp.Process(target=child_main, args=(theirs,), name="conveyor-sandbox")
            process.start()
        theirs.close()
        child = _Child(process, ours)
        with self._lock:
            self._live.add(child)
            checkout.child = child
            if not self._at_exit:  # runs before multiprocessing's own exit handler joins it
                atexit.register(self._kill_all)
                self._at_exit = True
        return child

    def _retire(self, child: _Child) -> int | None:
        """Kill the child's group, reap the child; its exit code."""
        with self._lock:
            if child not in self._live:
                return None  # retired already
            self._live.discard(child)
        if child.leader or child.process.exitcode is None:
            child.kill()  # a child that died by itself may leave what it started
        child.process.join()
        code = child.process.exitcode
        child.process.close()
        child.conn.close()
        return code

    def _kill_all(self) -> None:
        with self._lock:
            live = list(self._live)
        for child in live:
            child.kill()


def _resolve(
    future: asyncio.Future[Done | Failed | _Died], result: Done | Failed | _Died | BaseException
) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _forward(update: ProgressUpdate, context: JobContext) -> None:
    """A child's report, made again on the job's context in the worker."""
    try:
        if update.progress is not None:
            context.progress(update.progress, **(update.detail or {}))
        for line in update.logs:
            context.log(line)
    except Exception as exc:  # e.g. the worker's loop is closing
        log.warning("job %s: report from its sandbox dropped: %s", context.id, exc)


class _ChildTraceback(Exception):
    """The traceback text of an error raised in a child (as ``concurrent.futures`` does)."""

    def __str__(self) -> str:
        return f'\n"""\n{self.args[0]}"""'


_error_types: dict[tuple[str, type[Exception]], type[Exception]] = {}


def _rebuild(failed: Failed) -> Exception:
    """The worker's stand-in for a child's error: named like it, and a ``Retry``,
    ``NonRetryable`` or ``RateLimited`` when it was one, so the worker reads it alike."""
    if failed.kind == "limited":
        limited = RateLimited(failed.delay or 1.0, group=failed.group, reason=failed.message)
        limited.__cause__ = _ChildTraceback(failed.traceback)
        return limited
    base: type[Exception] = {"retry": Retry, "final": NonRetryable}.get(failed.kind, SandboxError)
    kind = base
    name = failed.error_type
    if name != base.__name__ and name.isidentifier():
        if (name, base) not in _error_types:
            namespace = {"__module__": __name__, "__doc__": base.__doc__}
            _error_types[name, base] = type(name, (base,), namespace)
        kind = _error_types[name, base]
    if issubclass(kind, Retry):
        exc: Exception = kind(failed.message, delay=failed.delay)
    else:
        exc = kind(failed.message)
    exc.__cause__ = _ChildTraceback(failed.traceback)
    return exc
