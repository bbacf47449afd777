"""Jobs as values: the state enum, the frozen ``Job`` read from the store, and
the per-job options stored with it.

A ``Job`` is a snapshot. It holds no connection and never changes; read the
job again to see it move. Timestamps are UTC ``datetime`` objects here and UTC
epoch milliseconds in storage.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from conveyor import validate
from conveyor.retry import Backoff

__all__ = [
    "ChildOutcome",
    "ChildOutcomes",
    "Job",
    "JobOptions",
    "JobState",
    "LogEntry",
    "OnFailure",
    "Retention",
    "from_ms",
    "is_own_bucket",
    "ms_to_datetime",
    "retention_bucket",
]

OnFailure = Literal["fail", "ignore", "decide"]  # what a child's failure does (conveyor.flow)
POLICIES: tuple[OnFailure, ...] = ("fail", "ignore", "decide")


class JobState(enum.StrEnum):
    DELAYED = "delayed"  # waits for a time: a delay, a retry backoff
    WAITING = "waiting"  # ready; claimed by priority, then FIFO (LIFO on request)
    WAITING_CHILDREN = "waiting_children"  # a parent waiting for its children
    ACTIVE = "active"  # leased by a worker
    COMPLETED = "completed"  # finished with a result
    FAILED = "failed"  # attempts exhausted or not retryable: the dead-letter set
    CANCELLED = "cancelled"  # cancelled before it finished

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class Retention(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """How many finished jobs to keep, and for how long (``None``: no limit).

    Per task and state; workers trim what is beyond it in bounded batches
    (``conveyor.worker.trimming``: a task may briefly hold a few hundred more than
    ``max_count``, and is back within a second or two after a burst).
    """

    max_count: int | None = None
    max_age_s: float | None = None

    @property
    def limited(self) -> bool:
        """Whether anything is ever trimmed (``False``: keep every job)."""
        return self.max_count is not None or self.max_age_s is not None

    def __post_init__(self) -> None:
        if self.max_count is not None:
            validate.count("max_count", self.max_count)
        if self.max_age_s is not None:
            validate.seconds("max_age_s", self.max_age_s)


DEFAULT_BACKOFF = Backoff.exponential(1.0)


def retention_bucket(task: str, retention: Retention, default: Retention) -> str:
    """Where a finished job is counted for trimming: its task's name when its
    retention is the task's ``default``, else a bucket of that task and
    retention of its own (``task NUL count:age``), trimmed apart, so a job
    configured to keep more (or less) than its task neither counts against
    the task's jobs nor is trimmed by their rule."""
    if retention == default:
        return task
    count = "-" if retention.max_count is None else str(retention.max_count)
    age = "-" if retention.max_age_s is None else f"{retention.max_age_s:g}"
    return f"{task}\0{count}:{age}"


def is_own_bucket(bucket: str) -> bool:
    """Whether ``bucket`` is a per-job retention's, not a task's (names have no NUL)."""
    return "\0" in bucket


DEFAULT_KEEP_COMPLETED = Retention(max_count=1000, max_age_s=86_400)
DEFAULT_KEEP_FAILED = Retention()


class JobOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Execution policy stored with each job (see ``@app.task`` for meanings).

    Stored without the fields that equal these defaults (a task with default
    options stores ``{}``), so a job saved before a default changed takes the
    new default.
    """

    timeout_s: float | None = None
    backoff: Backoff = DEFAULT_BACKOFF
    keep_completed: Retention = DEFAULT_KEEP_COMPLETED
    keep_failed: Retention = DEFAULT_KEEP_FAILED
    # What middleware carries with the job from its enqueue to its attempts
    # (``conveyor.tracing``: the W3C ``traceparent``); strings only, small.
    headers: dict[str, str] = {}


class LogEntry(msgspec.Struct, frozen=True):
    at: datetime
    message: str


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One job as last read from the store."""

    id: str
    task: str
    queue: str
    state: JobState
    args: dict[str, Any]
    priority: int = 0
    group: str | None = None
    parent_id: str | None = None  # the job waiting for this one (conveyor.flow)
    children: int = 0  # how many jobs this one waited for
    pipe: bool = False  # a chain step: its first argument is the previous step's result
    attempts: int = 0
    max_attempts: int = 1
    stalls: int = 0
    progress: float = 0.0
    progress_detail: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    options: JobOptions = JobOptions()
    worker_id: str | None = None
    created_at: datetime
    run_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class ChildOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one child of a running parent ended."""

    id: str
    task: str
    state: JobState  # completed, failed or cancelled
    result: Any = None  # a completed child's result
    error: str | None = None  # why a child did not complete
    ignored: bool = False  # it failed, and its on_failure was "ignore"


class ChildOutcomes(Sequence[ChildOutcome]):
    """The outcomes of a parent's children (empty for a job without any)."""

    def __init__(self, outcomes: Iterable[ChildOutcome] = ()) -> None:
        self._outcomes = sorted(outcomes, key=lambda o: o.id)

    def __getitem__(self, index: int) -> ChildOutcome:  # type: ignore[override]
        return self._outcomes[index]

    def __len__(self) -> int:
        return len(self._outcomes)

    def __iter__(self) -> Iterator[ChildOutcome]:
        return iter(self._outcomes)

    def __repr__(self) -> str:
        return f"<ChildOutcomes succeeded={self.succeeded} failed={len(self.failed)}>"

    @property
    def results(self) -> dict[str, Any]:
        """Each completed child's result, by child id."""
        return {o.id: o.result for o in self._outcomes if o.state == JobState.COMPLETED}

    @property
    def succeeded(self) -> int:
        return sum(o.state == JobState.COMPLETED for o in self._outcomes)

    @property
    def failed(self) -> list[ChildOutcome]:
        """Children that did not complete (ignored ones too)."""
        return [o for o in self._outcomes if o.state != JobState.COMPLETED]


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)
