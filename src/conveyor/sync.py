"""A blocking facade for producers without an event loop (Flask or Django
views, scripts, notebooks).

``SyncConveyor(app)`` runs the app's own async API on a private event loop in
a daemon thread; every method submits one coroutine there and waits for it.
There is no second implementation to keep in step. Give the facade an app
object of its own (or use that app only through the facade): the app's
connections then belong to the facade's loop.

```python
client = SyncConveyor(app)
handle = client.enqueue(send_email, "a@b.c", "welcome")
job = client.get_job(handle.id)
client.close()
```
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from conveyor.app import Conveyor, JobHandle
from conveyor.backends.base import NewJob
from conveyor.flow import Flow
from conveyor.job import Job, LogEntry
from conveyor.task import Call, Task

__all__ = ["SyncConveyor"]

P = ParamSpec("P")
T = TypeVar("T")


class SyncConveyor:
    def __init__(self, app: Conveyor, *, timeout: float = 30.0) -> None:
        self.app = app
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="conveyor-sync", daemon=True
        )
        self._thread.start()
        self._run(app.connect())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self.timeout)

    def enqueue(
        self, task: Task[P, Any] | Call[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle:
        """Validate and add one job (``task`` or ``task.configure(...)``)."""
        job = task.call(*args, **kwargs)  # validated here, in the caller's thread
        (handle,) = self._run(self.app.enqueue_many([job]))
        return handle

    def enqueue_many(self, jobs: Iterable[NewJob]) -> list[JobHandle]:
        return self._run(self.app.enqueue_many(list(jobs)))

    def add_flow(self, root: Flow) -> JobHandle:
        """Add a flow (``conveyor.flow``) in one atomic step."""
        return self._run(self.app.add_flow(root))

    def get_job(self, job_id: str) -> Job:
        return self._run(self.app.get_job(job_id))

    def get_logs(self, job_id: str) -> list[LogEntry]:
        return self._run(self.app.get_logs(job_id))

    def cancel(self, job_id: str) -> bool:
        return self._run(self.app.cancel(job_id))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.app.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncConveyor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()
