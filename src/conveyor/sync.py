"""A blocking facade for producers without an event loop (Flask or Django
views, scripts, notebooks).

``SyncConveyor(app)`` runs the app's own async API on a private event loop in
a daemon thread; every method submits one coroutine there and waits for it
(at most ``timeout`` seconds). There is no second implementation to keep in
step: each public coroutine method of ``Conveyor`` (reading: ``get_job``,
``get_logs``, ``list_jobs``, ``queues``, ``counts``, ``workers``, ``limits``;
managing: ``pause``, ``resume``, ``set_limits``, ``retry``, ``retry_failed``,
``cancel``, ``remove``, ``promote``, ``clean``, ``drain``, ``obliterate``,
``change_delay``, ``change_priority``, ``update_args``, ``dedup_key_owner``,
``release_dedup_key``, ``pause_worker``, ``resume_worker``; adding: ``enqueue_many``,
``add_flow``, ``add_flows``) and of ``app.schedules`` (``client.schedules.add``, ``pause``,
``resume``, ``remove``, ``list``, ``get``) has a blocking twin made by
``_blocking`` from the async method itself, with the same parameters,
docstring and result. ``enqueue`` is written out (it validates the arguments in
the caller's thread), and so are ``wait`` and ``result``, whose call may
last their own ``timeout`` on top of the facade's. Connecting happens when the facade is made;
``close`` closes the app and stops the loop.

An app is used from one event loop at a time: while the facade is open, its
loop is the app's, so use that app only through the facade (a call from
another loop meanwhile fails with ``ConfigurationError``), or give the facade
an app of its own. Before the facade is made and after ``close``, the app may
be used on other loops; each reconnects (see ``Conveyor``). A ``JobHandle``
it returns is for its ``id``; its ``get``/``wait``/``result`` are coroutines
(use ``client.get_job(handle.id)``, ``client.result(handle.id)``).

```python
client = SyncConveyor(app)
handle = client.enqueue(send_email, "a@b.c", "welcome")
job = client.get_job(handle.id)
waiting = client.counts("email")[JobState.WAITING]
client.close()
```
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from conveyor.app import Conveyor
from conveyor.handle import JobHandle
from conveyor.job import Job
from conveyor.schedules import Schedules
from conveyor.task import Call, Task

__all__ = ["SyncConveyor", "SyncSchedules"]

P = ParamSpec("P")
T = TypeVar("T")
Target = TypeVar("Target")


class _Loop:
    """A private event loop in a daemon thread, and how to run a coroutine on it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="conveyor-sync", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], *, longer: float = 0.0) -> T:
        """The coroutine's result, waited for ``timeout`` (plus ``longer``) seconds."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(self.timeout + longer)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class _Facade(Generic[Target]):
    """Runs the coroutine methods of ``target`` on ``loop`` (see ``_blocking``)."""

    def __init__(self, target: Target, loop: _Loop) -> None:
        self._target = target
        self._loop = loop


def _blocking(
    method: Callable[Concatenate[Target, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[_Facade[Target], P], T]:
    """The blocking twin of the async ``method``: same parameters (checked by
    mypy), same docstring, and the coroutine's result as its own."""

    @functools.wraps(method)
    def twin(self: _Facade[Target], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop.run(method(self._target, *args, **kwargs))

    return twin


class SyncSchedules(_Facade[Schedules]):
    """``app.schedules`` as blocking calls: ``client.schedules``."""

    add = _blocking(Schedules.add)
    pause = _blocking(Schedules.pause)
    resume = _blocking(Schedules.resume)
    remove = _blocking(Schedules.remove)
    list = _blocking(Schedules.list)
    get = _blocking(Schedules.get)


class SyncConveyor(_Facade[Conveyor]):
    def __init__(self, app: Conveyor, *, timeout: float = 30.0) -> None:
        super().__init__(app, _Loop(timeout))
        self.app = app
        self.schedules = SyncSchedules(app.schedules, self._loop)
        self._loop.run(app.connect())

    @property
    def timeout(self) -> float:
        """Seconds each call waits for its result."""
        return self._loop.timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._loop.timeout = seconds

    def enqueue(
        self, task: Task[P, Any] | Call[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle:
        """Validate and add one job (``task`` or ``task.configure(...)``)."""
        job = task.call(*args, **kwargs)  # validated here, in the caller's thread
        (handle,) = self._loop.run(self.app.enqueue_many([job]))
        return handle

    enqueue_many = _blocking(Conveyor.enqueue_many)
    add_flow = _blocking(Conveyor.add_flow)
    add_flows = _blocking(Conveyor.add_flows)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has finished, woken by its events (``Conveyor.wait``)."""
        return self._loop.run(self.app.wait(job_id, timeout), longer=timeout)

    def result(self, job_id: str, timeout: float = 60.0) -> Any:
        """The job's result once completed; ``JobFailed``, ``JobTimeout`` as
        ``Conveyor.result`` raises them."""
        return self._loop.run(self.app.result(job_id, timeout), longer=timeout)

    get_job = _blocking(Conveyor.get_job)
    get_flow = _blocking(Conveyor.get_flow)
    get_logs = _blocking(Conveyor.get_logs)
    list_jobs = _blocking(Conveyor.list_jobs)
    queues = _blocking(Conveyor.queues)
    counts = _blocking(Conveyor.counts)
    workers = _blocking(Conveyor.workers)
    limits = _blocking(Conveyor.limits)
    stats = _blocking(Conveyor.stats)
    totals = _blocking(Conveyor.totals)

    pause = _blocking(Conveyor.pause)
    resume = _blocking(Conveyor.resume)
    set_limits = _blocking(Conveyor.set_limits)
    retry = _blocking(Conveyor.retry)
    retry_failed = _blocking(Conveyor.retry_failed)
    cancel = _blocking(Conveyor.cancel)
    remove = _blocking(Conveyor.remove)
    promote = _blocking(Conveyor.promote)
    clean = _blocking(Conveyor.clean)
    drain = _blocking(Conveyor.drain)
    obliterate = _blocking(Conveyor.obliterate)
    change_delay = _blocking(Conveyor.change_delay)
    change_priority = _blocking(Conveyor.change_priority)
    update_args = _blocking(Conveyor.update_args)
    pause_worker = _blocking(Conveyor.pause_worker)
    resume_worker = _blocking(Conveyor.resume_worker)
    dedup_key_owner = _blocking(Conveyor.dedup_key_owner)
    release_dedup_key = _blocking(Conveyor.release_dedup_key)

    def close(self) -> None:
        """Close the app's connections and stop the loop; later calls fail."""
        if self._loop.loop.is_closed():
            return
        self._loop.run(self.app.close())
        self._loop.stop()

    def __enter__(self) -> SyncConveyor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
