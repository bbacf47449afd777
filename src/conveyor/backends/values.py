"""The values that cross the store contract: what a caller hands a backend
(``NewJob``, ``Taker``, ``ProgressUpdate``) and what it gets back
(``ClaimedJob``, ``ReclaimResult``, ``QueueInfo``, ``WorkerInfo``). Plain,
frozen and free of behaviour, so the worker, the app and both backends share
them without importing one another."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from conveyor.job import Job, JobState, OnFailure

__all__ = [
    "ClaimedJob",
    "JobChange",
    "NewJob",
    "ParentRef",
    "ProgressUpdate",
    "QueueInfo",
    "QueueSlots",
    "ReclaimResult",
    "Taker",
    "WorkerInfo",
]


class ParentRef(msgspec.Struct, frozen=True, array_like=True):
    """The job a flow's child belongs to (its queue and task name its keys)."""

    id: str
    queue: str
    task: str


class NewJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job to add. ``payload`` is the JSON object of arguments, already validated."""

    id: str
    task: str
    queue: str
    payload: bytes
    options: bytes  # JSON of ``JobOptions``
    priority: int = 0
    lifo: bool = False
    delay_ms: int = 0  # run no earlier than now + delay_ms ...
    run_at_ms: int | None = None  # ... or at this absolute time, if set
    max_attempts: int = 1
    ttl_ms: int | None = None  # not started this long after the enqueue: cancelled, "expired"
    dedup_key: str | None = None  # with one of the two modes below
    dedup_ttl_ms: int | None = None  # throttle: the key's window opened by a created job
    debounce: bool = False  # replace the key's unstarted job (``delay_ms`` is the debounce)
    group: str | None = None  # groups of a queue take turns (see ``conveyor.limits``)
    # Flows (``conveyor.flow``): the parent this job reports to and how its
    # failure counts there; how many children it waits for (> 0: it starts in
    # ``waiting_children``); whether its first argument is its child's result;
    # the flow's own id (a parent hears only children of its own flow).
    parent: ParentRef | None = None
    on_failure: OnFailure = "fail"
    children: int = 0
    pipe: bool = False
    flow_id: str | None = None  # shared by the jobs of one flow, and only by them
    child_ids: tuple[str, ...] = ()  # a parent's children, in the flow's order


class JobChange(msgspec.Struct, frozen=True, kw_only=True):
    """What ``change_job`` changes in a job that has not started (None: keep)."""

    run_at_ms: int | None = None  # its new due time (not after now: ready now)
    priority: int | None = None
    lifo: bool | None = None  # True: first of its priority (newest), False: by ready time
    payload: bytes | None = None  # its arguments, validated and encoded


class QueueSlots(NamedTuple):
    """A claim's room in some of a worker's queues: ``free`` jobs at most,
    from ``queues`` together (each queue in one ``QueueSlots`` of a claim)."""

    queues: tuple[str, ...]
    free: int


class Taker(NamedTuple):
    """The worker an idle wait may be handed jobs for (``wait_for_jobs``)."""

    worker_id: str
    lease_ms: int
    queues: tuple[str, ...]  # at most one job handed in each


class ClaimedJob(msgspec.Struct, frozen=True, kw_only=True):
    """A job leased to a worker: the snapshot taken at claim plus its fencing token."""

    job: Job
    token: str
    lease_expires_ms: int
    payload: bytes  # the arguments' JSON, decoded by the task's signature


class ProgressUpdate(msgspec.Struct, frozen=True, kw_only=True):
    progress: float | None = None
    detail: dict[str, Any] | None = None
    logs: tuple[str, ...] = ()


class ReclaimResult(msgspec.Struct, frozen=True):
    requeued: list[str]  # expired leases put back to ``waiting``
    failed: list[str]  # jobs that stalled more than ``max_stalls`` times


class QueueInfo(msgspec.Struct, frozen=True):
    name: str
    paused: bool
    counts: dict[JobState, int]


class WorkerInfo(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int  # jobs it runs at once at most, in all
    queue_concurrency: dict[str, int] = {}  # queues with slots of their own
    active: int
    processed: int
    started_at_ms: int
    last_seen_ms: int
    paused: bool = False  # it claims nothing until resumed (``Worker.pause``)
