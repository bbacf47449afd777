"""The Redis job record: one hash per job.

The 'data' field holds what never changes (but the arguments of a job not
yet started, by ``update_args``), as one JSON array: id, task, queue, max
attempts, and the options and arguments embedded raw (no second escaping).
The other fields change with the job's state; a field at its default
(attempts, stalls, progress 0) is left unset. No script reads 'data'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from conveyor.backends.rows import UnreadableRecord, job_from_row
from conveyor.backends.values import NewJob, ParentRef
from conveyor.job import Job

# The fields returned by ``read_job`` in lib.lua, in the same order.
FIELDS = (
    "data",
    "state",
    "priority",
    "attempts",
    "stalls",
    "worker_id",
    "progress",
    "progress_detail",
    "result",
    "error",
    "traceback",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "group",
)


class Data(msgspec.Struct, frozen=True, array_like=True):
    """The 'data' field; the flow fields are left out of jobs outside flows."""

    id: str
    task: str
    queue: str
    max_attempts: int
    options: msgspec.Raw
    payload: msgspec.Raw
    parent: ParentRef | None = None
    children: int = 0
    pipe: bool = False
    kids: tuple[str, ...] = ()  # a parent's children's ids, in the flow's order


_decode_data = msgspec.json.Decoder(Data).decode


def encode_data(job: NewJob) -> bytes:
    """A job's 'data' field: what never changes, with options and arguments
    embedded as they are (no second escaping)."""
    return _encode(
        Data(
            job.id,
            job.task,
            job.queue,
            job.max_attempts,
            msgspec.Raw(job.options),
            msgspec.Raw(job.payload),
            job.parent,
            job.children,
            job.pipe,
            job.child_ids,
        )
    )


def with_payload(data: bytes, payload: bytes) -> bytes:
    """A job's 'data' field with other arguments (``update_args``: the only
    change it ever sees, made before the job starts)."""
    return _encode(msgspec.structs.replace(_decode_data(data), payload=msgspec.Raw(payload)))


def _encode(d: Data) -> bytes:
    fields: tuple[Any, ...] = (d.id, d.task, d.queue, d.max_attempts, d.options, d.payload)
    if d.parent is not None or d.children:
        fields += (d.parent, d.children, d.pipe)
    if d.kids:
        fields += (d.kids,)
    return msgspec.json.encode(fields)


def kids_of(data: bytes) -> tuple[str, ...]:
    """The ids of a parent's children in its 'data' field (none: not a parent,
    or stored before they were kept there)."""
    return _decode_data(data).kids


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def job_from_fields(values: Sequence[Any], job_id: str) -> tuple[Job, bytes]:
    """A job and its arguments' JSON, from ``HMGET`` of ``FIELDS`` (bytes or
    None); ``UnreadableRecord`` if they cannot be read."""
    try:
        return _job_from_fields(values)
    except UnreadableRecord:
        raise
    except Exception as exc:
        raise UnreadableRecord(job_id, exc) from exc


def _job_from_fields(values: Sequence[Any]) -> tuple[Job, bytes]:
    (
        data,
        state,
        priority,
        attempts,
        stalls,
        worker_id,
        progress,
        detail,
        result,
        error,
        trace,
        created_at,
        run_at,
        started_at,
        finished_at,
        group,
    ) = values
    d = _decode_data(data)
    arguments = bytes(d.payload)
    row = (
        d.id,
        d.task,
        d.queue,
        state.decode(),
        int(priority),
        arguments,
        bytes(d.options),
        int(attempts or 0),
        d.max_attempts,
        int(stalls or 0),
        _text(worker_id),
        float(progress or 0),
        detail,
        result,
        _text(error),
        _text(trace),
        int(created_at),
        int(run_at),
        _int(started_at),
        _int(finished_at),
        _text(group),
        None if d.parent is None else d.parent.id,
        d.children,
        d.pipe,
    )
    return job_from_row(row), arguments


def identity_of(data: bytes) -> tuple[str, str]:
    """The queue and task in a job's 'data' field."""
    d = _decode_data(data)
    return d.queue, d.task


def retention_member(queue: str, job_id: str) -> str:
    """A retention set member: the queue too, so a trim knows the job's keys."""
    return f"{queue}\0{job_id}"
