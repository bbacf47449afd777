"""The Redis job record: one hash per job.

The 'data' field holds what never changes, as one JSON array: id, task, queue,
max attempts, and the options and arguments embedded raw (no second
escaping). The other fields change with the job's state; a field at its
default (attempts, stalls, progress 0) is left unset. No script reads 'data'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from conveyor.backends.base import NewJob
from conveyor.backends.rows import job_from_row
from conveyor.job import Job

# The fields returned by ``read_job`` in lib.lua, in the same order.
FIELDS = (
    "data", "state", "priority", "attempts", "stalls", "worker_id", "progress",
    "progress_detail", "result", "error", "traceback", "created_at", "run_at", "started_at",
    "finished_at", "group",
)  # fmt: skip
Data = tuple[str, str, str, int, msgspec.Raw, msgspec.Raw]  # id, task, queue, max, options, args
_decode_data = msgspec.json.Decoder(Data).decode


def encode_data(job: NewJob) -> bytes:
    """A job's 'data' field: what never changes, with options and arguments
    embedded as they are (no second escaping)."""
    return msgspec.json.encode(
        (job.id, job.task, job.queue, job.max_attempts, msgspec.Raw(job.options),
         msgspec.Raw(job.payload))
    )  # fmt: skip


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def job_from_fields(values: Sequence[Any]) -> tuple[Job, bytes]:
    """A job and its arguments' JSON, from ``HMGET`` of ``FIELDS`` (bytes or None)."""
    (data, state, priority, attempts, stalls, worker_id, progress, detail, result, error,
     trace, created_at, run_at, started_at, finished_at, group) = values  # fmt: skip
    job_id, task, queue, max_attempts, options, payload = _decode_data(data)
    arguments = bytes(payload)
    row = (
        job_id, task, queue, state.decode(), int(priority), arguments, bytes(options),
        int(attempts or 0), max_attempts, int(stalls or 0), _text(worker_id),
        float(progress or 0), detail, result, _text(error), _text(trace), int(created_at),
        int(run_at), _int(started_at), _int(finished_at), _text(group),
    )  # fmt: skip
    return job_from_row(row), arguments


def identity_of(data: bytes) -> tuple[str, str]:
    """The queue and task in a job's 'data' field."""
    _, task, queue, *_ = _decode_data(data)
    return queue, task


def retention_member(queue: str, job_id: str) -> str:
    """A retention set member: the queue too, so a trim knows the job's keys."""
    return f"{queue}\0{job_id}"
