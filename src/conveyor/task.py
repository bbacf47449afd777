"""Tasks: functions registered on an app, and the calls that enqueue them.

``Task[P, R]`` keeps the function's parameters (``ParamSpec``), so
``send_email.enqueue("a@b.c", "welcome")`` is type-checked like a call.
Job options never mix with job arguments: ``task.configure(priority=5,
delay=60)`` returns a ``Call`` whose ``enqueue(*args, **kwargs)`` takes the
function's arguments only.

Priority: an integer from -100 to 100, default 0; higher runs first.
"""

from __future__ import annotations

import inspect
import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar

import msgspec

from conveyor import validate
from conveyor.arguments import Signature
from conveyor.backends.values import NewJob
from conveyor.errors import InvalidInput, PayloadTooLarge, UnknownTask
from conveyor.handle import JobHandle
from conveyor.importing import import_path
from conveyor.job import JobOptions, Retention
from conveyor.limits import group_name
from conveyor.retry import Backoff

__all__ = ["Call", "Task"]

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")

_encode_options = msgspec.json.encode


class Enqueuer(Protocol):
    """What a task enqueues through (the app)."""

    max_payload_bytes: int

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[JobHandle]: ...


def find_task(tasks: Mapping[str, Task[Any, Any]], name: str) -> Task[Any, Any]:
    """The task registered as ``name``; ``UnknownTask`` if there is none."""
    try:
        return tasks[name]
    except KeyError:
        raise UnknownTask(name) from None


class Task(Generic[P, R]):
    """A function that runs as a job. Call it directly to run it in-process."""

    def __init__(
        self,
        app: Enqueuer,
        fn: Callable[P, R],
        *,
        name: str,
        queue: str,
        retries: int,
        backoff: Backoff,
        timeout: float | None,
        priority: int,
        keep_completed: Retention,
        keep_failed: Retention,
        sandbox: bool = False,
    ) -> None:
        self.app = app
        self.fn = fn
        self.__wrapped__ = fn  # what a sandbox's child finds under the task's name
        self.name = validate.name("name", name)
        self.queue = validate.name("queue", queue)
        self.retries = validate.retries(retries)
        self.priority = validate.priority(priority)
        self.timeout = (
            None if timeout is None else validate.seconds("timeout", timeout, allow_zero=False)
        )
        for field, value, kind in (
            ("backoff", backoff, Backoff),
            ("keep_completed", keep_completed, Retention),
            ("keep_failed", keep_failed, Retention),
        ):
            if not isinstance(value, kind):
                raise InvalidInput(field, f"must be a {kind.__name__}")
        self.backoff = backoff
        self.options = JobOptions(
            timeout_s=self.timeout,
            backoff=backoff,
            keep_completed=keep_completed,
            keep_failed=keep_failed,
        )
        if validate.flag(
            "sandbox", sandbox
        ):  # a function no child can import: ConfigurationError now, not failed jobs
            import_path(fn)
        self.sandbox = sandbox
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = Signature(fn)
        self._default_call: Call[P, R] = Call(self)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def configure(
        self,
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        job_id: str | None = None,
        lifo: bool = False,
        queue: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        ttl: float | timedelta | None = None,
        dedup_key: str | None = None,
        dedup_ttl: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
        group: str | None = None,
        keep_completed: Retention | None = None,
        keep_failed: Retention | None = None,
    ) -> Call[P, R]:
        """Options for one enqueue: a delay (seconds) or an aware ``run_at``, a
        priority, a job id (enqueueing an id already stored adds nothing),
        LIFO order, another queue, other retries or timeout, or a ``ttl``: a
        job not started within ``ttl`` seconds of its enqueue (by the store's
        clock) is not run and ends ``cancelled`` with error ``expired``; once
        started, its ttl is spent.

        ``dedup_key`` with ``dedup_ttl`` throttles: while the key's window
        (``dedup_ttl`` seconds from the enqueue that opened it, by the store's
        clock) lasts, an enqueue with that key adds nothing and its handle
        names the job that opened the window. ``dedup_key`` with ``debounce``
        delays the job by ``debounce`` seconds and replaces (removes) the
        key's previous job if that one has not started yet, so only the last
        of a burst runs.

        ``group`` puts the job in a group (a tenant, say) of its queue: groups
        take turns at claims, and may have limits of their own
        (``app.set_limits(queue, group=...)``; see ``conveyor.limits``).

        ``keep_completed`` and ``keep_failed`` give this job a retention of its
        own (BullMQ's per-job ``removeOnComplete``/``removeOnFail``):
        ``Retention(max_count=0)`` deletes it within a second or so of its
        end, ``Retention(None, None)`` keeps it. Jobs with the same task and
        retention are trimmed together, apart from the task's own, and count
        against neither. A by-age retention of its own is applied while
        workers see such jobs finish (and after a restart, from the next
        one that does)."""
        return Call(
            self,
            delay=delay,
            run_at=run_at,
            priority=priority,
            job_id=job_id,
            lifo=lifo,
            queue=queue,
            retries=retries,
            timeout=timeout,
            ttl=ttl,
            dedup_key=dedup_key,
            dedup_ttl=dedup_ttl,
            debounce=debounce,
            group=group,
            keep_completed=keep_completed,
            keep_failed=keep_failed,
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        """Validate the arguments and add a job with the task's defaults."""
        return await self._default_call.enqueue(*args, **kwargs)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> NewJob:
        """A validated job, not yet added: pass many to ``app.enqueue_many``."""
        return self._default_call.call(*args, **kwargs)

    def encode_args(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], *, piped: bool = False
    ) -> bytes:
        """A job's payload: the arguments bound to the signature, checked
        against its hints and the app's size limit (``piped``: a chain step's,
        all but the first)."""
        signature = self.signature
        bound = signature.bind_piped(args, kwargs) if piped else signature.bind(args, kwargs)
        payload = signature.encode(bound, piped=piped)
        limit = self.app.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLarge(
                "args", f"encode to {len(payload)} bytes, over the limit of {limit}"
            )
        return payload

    def pipe(self: Task[Concatenate[Any, P2], R], *args: P2.args, **kwargs: P2.kwargs) -> NewJob:
        """A chain step (``conveyor.flow.chain``): a job whose first argument
        is the result of the step before it; give the others here."""
        return self._default_call.pipe(*args, **kwargs)


class Call(Generic[P, R]):
    """A task with per-enqueue options, validated once."""

    def __init__(
        self,
        task: Task[P, R],
        *,
        delay: float | timedelta | None = None,
        run_at: datetime | None = None,
        priority: int | None = None,
        job_id: str | None = None,
        lifo: bool = False,
        queue: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
        ttl: float | timedelta | None = None,
        dedup_key: str | None = None,
        dedup_ttl: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
        group: str | None = None,
        keep_completed: Retention | None = None,
        keep_failed: Retention | None = None,
    ) -> None:
        if delay is not None and run_at is not None:
            raise InvalidInput("delay", "give delay or run_at, not both")
        self.task = task
        self.delay_ms = 0 if delay is None else int(validate.seconds("delay", delay) * 1000)
        self.dedup_key, self.dedup_ttl_ms, debounce_ms = _dedup(dedup_key, dedup_ttl, debounce)
        self.debounce = debounce_ms is not None
        if debounce_ms is not None:
            if delay is not None or run_at is not None:
                raise InvalidInput("debounce", "is the job's delay: give no delay or run_at")
            self.delay_ms = debounce_ms
        self.run_at_ms = None if run_at is None else validate.moment("run_at", run_at)
        self.priority = task.priority if priority is None else validate.priority(priority)
        self.job_id = None if job_id is None else validate.name("job_id", job_id)
        self.lifo = validate.flag("lifo", lifo)
        self.group = None if group is None else group_name(group)
        self.queue = task.queue if queue is None else validate.name("queue", queue)
        self.max_attempts = 1 + (task.retries if retries is None else validate.retries(retries))
        options = _options(task.options, timeout, keep_completed, keep_failed)
        self.ttl_ms: int | None = None
        if ttl is not None:
            self.ttl_ms = int(validate.seconds("ttl", ttl, allow_zero=False) * 1000)
            if self.ttl_ms <= self.delay_ms:
                raise InvalidInput("ttl", "must be longer than the delay")
            if self.run_at_ms is not None and self.run_at_ms >= time.time() * 1000 + self.ttl_ms:
                raise InvalidInput("ttl", "ends before run_at: the job could never start")
        self.options = _encode_options(options)

    def call(self, *args: P.args, **kwargs: P.kwargs) -> NewJob:
        return self._job(self.task.encode_args(args, kwargs))

    def pipe(self: Call[Concatenate[Any, P2], R], *args: P2.args, **kwargs: P2.kwargs) -> NewJob:
        """As ``Task.pipe``, with this call's options."""
        payload = self.task.encode_args(args, kwargs, piped=True)
        return msgspec.structs.replace(self._job(payload), pipe=True)

    def _job(self, payload: bytes) -> NewJob:
        return NewJob(
            id=self.job_id or new_job_id(),
            task=self.task.name,
            queue=self.queue,
            payload=payload,
            options=self.options,
            priority=self.priority,
            lifo=self.lifo,
            delay_ms=self.delay_ms,
            run_at_ms=self.run_at_ms,
            max_attempts=self.max_attempts,
            ttl_ms=self.ttl_ms,
            dedup_key=self.dedup_key,
            dedup_ttl_ms=self.dedup_ttl_ms,
            debounce=self.debounce,
            group=self.group,
        )

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle:
        (handle,) = await self.task.app.enqueue_many([self.call(*args, **kwargs)])
        return handle


def _options(
    options: JobOptions, timeout: object, keep_completed: object, keep_failed: object
) -> JobOptions:
    """A task's options with one enqueue's timeout and retentions over them."""
    if timeout is not None:
        options = msgspec.structs.replace(
            options, timeout_s=validate.seconds("timeout", timeout, allow_zero=False)
        )
    for field, kept in (("keep_completed", keep_completed), ("keep_failed", keep_failed)):
        if kept is not None:
            if not isinstance(kept, Retention):
                raise InvalidInput(field, "must be a Retention")
            options = msgspec.structs.replace(options, **{field: kept})
    return options


def _dedup(key: object, ttl: object, debounce: object) -> tuple[str | None, int | None, int | None]:
    """A dedup key with exactly one mode: ``(key, throttle window ms, debounce ms)``."""
    if key is None:
        for field, value in (("dedup_ttl", ttl), ("debounce", debounce)):
            if value is not None:
                raise InvalidInput(field, "needs a dedup_key")
        return None, None, None
    key = validate.name("dedup_key", key)
    if (ttl is None) == (debounce is None):
        raise InvalidInput("dedup_key", "needs exactly one of dedup_ttl (throttle) or debounce")
    field, value = ("dedup_ttl", ttl) if ttl is not None else ("debounce", debounce)
    ms = max(1, round(validate.seconds(field, value, allow_zero=False) * 1000))
    return (key, ms, None) if field == "dedup_ttl" else (key, None, ms)


def new_job_id() -> str:
    """32 hex digits: 48 bits of milliseconds, 48 random bits fixed per process,
    then a 32-bit counter.

    Time-ordered, so new ids append to the store's id index instead of landing
    at random places in it, and cheap enough for bulk enqueues. Jobs made
    together therefore share all but the last few digits: show ids whole
    (that is also what every command and ``get_job`` take), never a prefix.
    """
    return f"{time.time_ns() // 1_000_000:012x}{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _seed_ids() -> None:
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = os.urandom(6).hex()
    _id_counter = itertools.count(int.from_bytes(os.urandom(4)))


_ID_PREFIX = ""
_id_counter = itertools.count()
_seed_ids()
os.register_at_fork(after_in_child=_seed_ids)  # a forked child must not repeat our ids
