"""The app object: owns one backend connection and the registry of tasks.

There is no global state: every task is registered on an app, and every
operation goes through the app's backend. The URL is the argument when one is
given, else ``CONVEYOR_URL`` (so code that names none can be pointed at a
store by its deployment), else ``sqlite:///conveyor.db``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from conveyor import validate
from conveyor.admin import Admin, job_state
from conveyor.backends import open_backend
from conveyor.backends.values import NewJob, QueueInfo, WorkerInfo
from conveyor.clock import Clock
from conveyor.errors import (
    ConfigurationError,
    InvalidInput,
    JobFailed,
    JobNotFound,
)
from conveyor.events import EventKind, EventSettings
from conveyor.flow import MAX_DEPTH, MAX_JOBS, Flow, FlowNode, flatten, read_flow
from conveyor.handle import JobHandle
from conveyor.job import (
    DEFAULT_BACKOFF,
    DEFAULT_KEEP_COMPLETED,
    DEFAULT_KEEP_FAILED,
    Job,
    JobState,
    LogEntry,
    Retention,
)
from conveyor.middleware import Middleware, call_hooks, hooked, prepare
from conveyor.retry import Backoff
from conveyor.schedules import Bounds, Schedules
from conveyor.stats import Span, Stats, StatsPoint
from conveyor.stream import Subscription, wait_finished
from conveyor.task import Task, find_task

__all__ = ["Conveyor"]

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_URL = "sqlite:///conveyor.db"
DEFAULT_MAX_PAYLOAD = 512 * 1024


class Conveyor(Admin):
    """An app: its tasks, and its connection to the store at ``url``, opened at
    first use (or by ``async with app`` / ``await app.connect()``).

    The connections belong to the event loop they were opened on, and the app
    may be used from one loop after another (``asyncio.run`` per call, a
    notebook, pytest's loop per test): the first call on a new loop reconnects
    by itself, dropping what the old loop held (closed or not) without it;
    ``close()`` belongs on the last. One loop at a time: while a loop running
    in another thread uses the app (a worker's, a ``SyncConveyor``'s), a call
    from another loop fails with ``ConfigurationError``; give each thread its
    own ``Conveyor(url)``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        events: EventSettings | bool = True,
    ) -> None:
        self.url = url or os.environ.get("CONVEYOR_URL") or DEFAULT_URL
        self.clock = clock or Clock()
        if isinstance(events, bool):  # False: neither events nor statistics
            events = EventSettings(enabled=events, stats=events)
        elif not isinstance(events, EventSettings):
            raise InvalidInput("events", "must be a bool or an EventSettings")
        self.backend = open_backend(self.url, clock=self.clock, events=events)
        self.max_payload_bytes = validate.count("max_payload_bytes", max_payload_bytes, minimum=1)
        self.tasks: dict[str, Task[Any, Any]] = {}
        # add, pause, resume, remove, list; fired by workers
        self.schedules = Schedules(self.backend, self.tasks)
        self.middleware: list[Middleware] = []  # app.use(...): conveyor.middleware
        self.hooks = hooked(self.middleware)  # per hook, the middleware that have it

    # -- set-up ------------------------------------------------------------------

    def cron(
        self,
        expr: str,
        *,
        tz: str = "UTC",
        id: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        limit: int | None = None,
    ) -> Callable[[Callable[P, R] | Task[P, R]], Task[P, R]]:
        """Declare a schedule in code: ``@app.cron("0 8 * * *", tz="Europe/Paris")``
        on a function (registered as a task) or on a task. Saved in the store
        when a worker starts; see ``conveyor.cron`` for the policies and the
        bounds (``start_at``, ``end_at``, ``limit``)."""
        bounds = Bounds.of(start_at, end_at, limit)

        def declare(target: Callable[P, R] | Task[P, R]) -> Task[P, R]:
            return self.schedules.declare(
                self._as_task(target),
                cron=expr,
                tz=tz,
                id=id,
                args=args,
                kwargs=kwargs,
                bounds=bounds,
            )

        return declare

    def every(
        self,
        seconds: float,
        *,
        id: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        limit: int | None = None,
    ) -> Callable[[Callable[P, R] | Task[P, R]], Task[P, R]]:
        """Declare a fixed-interval schedule in code, as ``cron`` does."""
        bounds = Bounds.of(start_at, end_at, limit)

        def declare(target: Callable[P, R] | Task[P, R]) -> Task[P, R]:
            return self.schedules.declare(
                self._as_task(target),
                every=seconds,
                id=id,
                args=args,
                kwargs=kwargs,
                bounds=bounds,
            )

        return declare

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        priority: int = 0,
        keep_completed: Retention = DEFAULT_KEEP_COMPLETED,
        keep_failed: Retention = DEFAULT_KEEP_FAILED,
        sandbox: bool = False,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        retries: int = 0,
        backoff: Backoff | None = None,
        timeout: float | None = None,
        priority: int = 0,
        keep_completed: Retention = DEFAULT_KEEP_COMPLETED,
        keep_failed: Retention = DEFAULT_KEEP_FAILED,
        sandbox: bool = False,
    ) -> Any:
        """Register a function as a task, named ``name`` or the function's name.

        ``retries`` extra attempts after the first, waiting ``backoff`` between
        them (default: ``Retry.exponential(1.0)``); ``timeout`` seconds per
        attempt; default ``priority`` (-100..100, higher first). Finished jobs
        are kept per task by ``keep_completed`` (default: the newest 1000, for
        at most a day) and ``keep_failed`` (default: all; the dead-letter set).
        ``sandbox=True`` runs each job in a child process that its timeout or a
        cancel kills (see ``conveyor.worker.sandbox``); the function must be importable
        by its module and name.
        """

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            task_name = fn.__name__ if name is None else validate.name("name", name)
            if task_name in self.tasks:
                raise ConfigurationError(
                    f"a task named {task_name!r} is already registered; pass name= to tell apart"
                )
            registered = Task(
                self,
                fn,
                name=task_name,
                queue=queue,
                retries=retries,
                backoff=backoff or DEFAULT_BACKOFF,
                timeout=timeout,
                priority=priority,
                keep_completed=keep_completed,
                keep_failed=keep_failed,
                sandbox=sandbox,
            )
            self.tasks[task_name] = registered
            return registered

        return register if fn is None else register(fn)

    def use(self, middleware: Middleware) -> None:
        """Add hooks around every enqueue and every attempt of this app's
        workers (``conveyor.middleware``); called in the order added."""
        if not isinstance(middleware, Middleware):
            raise InvalidInput("middleware", "must be a conveyor.middleware.Middleware")
        self.middleware.append(middleware)
        self.hooks = hooked(self.middleware)

    def _as_task(self, target: Callable[P, R] | Task[P, R]) -> Task[P, R]:
        return target if isinstance(target, Task) else self.task(target)

    def get_task(self, name: str) -> Task[Any, Any]:
        return find_task(self.tasks, name)

    # -- connection ----------------------------------------------------------------

    async def connect(self) -> None:
        await self.backend.connect()

    async def close(self) -> None:
        await self.backend.close()

    async def __aenter__(self) -> Conveyor:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- producing -----------------------------------------------------------------

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[JobHandle]:
        """Add prepared jobs (``task.call(...)``) in one atomic step."""
        if isinstance(jobs, str | bytes) or not isinstance(jobs, Iterable):
            raise InvalidInput("jobs", "must be a list of task.call(...) values")
        batch = list(jobs)
        for job in batch:
            if not isinstance(job, NewJob):
                raise InvalidInput(
                    "jobs", f"must hold task.call(...) values, not {type(job).__name__}"
                )
        added = await self._add(batch)  # a throttled job: the existing id
        return [JobHandle(self, job_id, created=made) for job_id, made in added]

    async def _add(self, jobs: list[NewJob]) -> list[tuple[str, bool]]:
        """Write ``jobs`` in one step, as the middleware prepared them, then tell it."""
        if self.hooks["enqueuing"]:
            jobs = await prepare(self.hooks["enqueuing"], jobs)
        added = await self.backend.enqueue(jobs=jobs)
        if told := self.hooks["enqueued"]:
            created = [made for _, made in added]
            await call_hooks(told, lambda m: m.enqueued(jobs, created), "enqueued")
        return added

    async def add_flow(self, root: Flow) -> JobHandle:
        """Add a flow (``conveyor.flow``: ``flow``, ``chain``, ``batch``) in one
        atomic step; the handle is its root's, the job that runs last. If any
        of its job ids is already stored, nothing is added (``created`` False)."""
        if not isinstance(root, Flow):
            raise InvalidInput("flow", "must be made by flow(), chain() or batch()")
        jobs = flatten(root)
        (job_id, made), *_ = await self._add(jobs)
        return JobHandle(self, job_id, created=made)

    async def add_flows(self, roots: Iterable[Flow]) -> list[JobHandle]:
        """Add several flows in one atomic step: all of them, or (if any of
        their job ids is already stored) none (every handle ``created`` False).
        The handles are the roots', in order."""
        if isinstance(roots, Flow) or not isinstance(roots, Iterable):
            raise InvalidInput("flows", "must be a list of flows (flow(), chain(), batch())")
        batch = list(roots)
        if not batch or not all(isinstance(root, Flow) for root in batch):
            raise InvalidInput("flows", "must be a non-empty list of flows")
        jobs: list[NewJob] = []
        firsts: list[int] = []
        seen: set[str] = set()
        for root in batch:
            flat = flatten(root)
            for job in flat:
                if job.id in seen:
                    raise InvalidInput("job_id", f"{job.id!r} is in two of the flows")
                seen.add(job.id)
            firsts.append(len(jobs))
            jobs += flat
        added = await self._add(jobs)
        return [JobHandle(self, added[i][0], created=added[i][1]) for i in firsts]

    # -- reading -------------------------------------------------------------------

    async def get_flow(
        self, job_id: str, *, max_depth: int = MAX_DEPTH, max_jobs: int = MAX_JOBS
    ) -> FlowNode:
        """The tree of the flow ``job_id`` belongs to (any job of it), from its
        root: each node's job, with its state, and its children in the
        flow's order; at most ``max_depth`` levels and ``max_jobs`` jobs
        (a node past them says ``truncated``). ``JobNotFound`` if no such job."""
        tree = await read_flow(
            self.backend,
            validate.name("job_id", job_id),
            max_depth=validate.count("max_depth", max_depth),
            max_jobs=validate.count("max_jobs", max_jobs, minimum=1),
        )
        if tree is None:
            raise JobNotFound(job_id)
        return tree

    async def get_job(self, job_id: str) -> Job:
        job = await self.backend.get_job(job_id=validate.name("job_id", job_id))
        if job is None:
            raise JobNotFound(job_id)
        return job

    def events(
        self,
        queue: str | None = None,
        job_id: str | None = None,
        kinds: Iterable[EventKind | str] | None = None,
        after: str | None = None,
    ) -> Subscription:
        """Every process's job events from now on (or after the event id
        ``after``), in order, each once: ``async for event in app.events():``.
        See ``conveyor.events`` for the kinds and the ``gap`` marker."""
        return Subscription(self.backend, queue=queue, job_id=job_id, kinds=kinds, after=after)

    async def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once it has finished (completed, failed or cancelled),
        woken by its events, not by polling; ``JobTimeout`` after ``timeout``."""
        return await wait_finished(self.events(job_id=job_id), self.get_job, timeout)

    async def result(self, job_id: str, timeout: float = 60.0) -> Any:
        """The result of the job once completed; ``JobFailed`` when it failed
        for good or was cancelled; ``JobTimeout`` after ``timeout``."""
        job = await self.wait(job_id, timeout)
        if job.state is not JobState.COMPLETED:
            raise JobFailed(job.id, job.state, job.error)
        return job.result

    async def stats(
        self,
        queue: str | None = None,
        task: str | None = None,
        *,
        since: datetime | timedelta | None = None,
        until: datetime | None = None,
        step: timedelta | float = 60.0,
    ) -> list[StatsPoint]:
        """The outcomes of a queue and task (None: all) per ``step`` (a whole
        number of minutes) from ``since`` (a datetime, or how long before
        ``until``; default an hour) to ``until`` (default now), a point for
        every step, empty ones zero. See ``conveyor.stats``."""
        span = Span.of(since, until, step, now_ms=await self.backend.now_ms())
        minutes = await self.backend.read_stats(
            since_ms=span.since_ms,
            until_ms=span.until_ms,
            queue=None if queue is None else validate.name("queue", queue),
            task=None if task is None else validate.name("task", task),
        )
        return span.series(minutes)

    async def totals(self) -> dict[str, Stats]:
        """Each queue's outcomes ever (counts only), by queue name."""
        return await self.backend.totals()

    async def get_logs(self, job_id: str) -> list[LogEntry]:
        return await self.backend.get_logs(job_id=validate.name("job_id", job_id))

    async def list_jobs(
        self,
        state: JobState | str,
        *,
        queue: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> list[Job]:
        return await self.backend.list_jobs(
            queue=None if queue is None else validate.name("queue", queue),
            state=job_state(state),
            offset=validate.count("offset", offset),
            limit=validate.count("limit", limit, minimum=1),
        )

    async def queues(self) -> list[QueueInfo]:
        return await self.backend.queues()

    async def counts(self, queue: str) -> dict[JobState, int]:
        validate.name("queue", queue)
        for info in await self.backend.queues():
            if info.name == queue:
                return info.counts
        return dict.fromkeys(JobState, 0)

    async def workers(self, *, seen_within: float = 60.0) -> list[WorkerInfo]:
        seconds = validate.seconds("seen_within", seen_within)
        return await self.backend.workers(seen_within_ms=int(seconds * 1000))
