"""Turning stored records into values, for every backend: job fields (in
``COLUMNS`` order) into ``Job`` values, schedule specs into ``Schedule``."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from conveyor.cron import Fired, Schedule
from conveyor.errors import BackendError
from conveyor.job import Job, JobOptions, JobState, from_ms, ms_to_datetime

log = logging.getLogger("conveyor.store")

COLUMNS = (
    "id, task, queue, state, priority, payload, options, attempts, max_attempts, stalls, "
    "worker_id, progress, progress_detail, result, error, traceback, "
    "created_at, run_at, started_at, finished_at, grp, parent_id, children, pipe"
)

_decode_options = msgspec.json.Decoder(JobOptions).decode
_decode_any = msgspec.json.Decoder().decode
_options_cache: dict[bytes, JobOptions] = {}


def options_from(raw: bytes) -> JobOptions:
    # Jobs of one task share their options; decode each distinct blob once.
    options = _options_cache.get(raw)
    if options is None:
        options = _decode_options(raw)
        if len(_options_cache) > 1024:
            _options_cache.clear()
        _options_cache[raw] = options
    return options


_STATES = {state.value: state for state in JobState}  # faster than JobState(value)


class UnreadableRecord(BackendError):
    """A stored job whose fields cannot be read (written by hand, by another
    version, by a bug); ``reason`` says what failed."""

    def __init__(self, job_id: str, exc: Exception) -> None:
        self.job_id = job_id
        self.reason = f"unreadable record: {type(exc).__name__}: {exc}"
        super().__init__(f"job {job_id}: {self.reason}")


def job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    """A ``Job`` from its fields; ``UnreadableRecord`` if they cannot be read."""
    try:
        return _job_from_row(row)
    except Exception as exc:
        raise UnreadableRecord(str(row[0]), exc) from exc


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Job:
    (
        id_,
        task,
        queue,
        state,
        priority,
        payload,
        options,
        attempts,
        max_attempts,
        stalls,
        worker_id,
        progress,
        detail,
        result,
        error,
        traceback,
        created_at,
        run_at,
        started_at,
        finished_at,
        group,
        parent_id,
        children,
        pipe,
    ) = row
    return Job(
        id=id_,
        task=task,
        queue=queue,
        state=_STATES[state],
        args=_decode_any(payload),
        priority=priority,
        group=group,
        parent_id=parent_id,
        children=children,
        pipe=bool(pipe),
        attempts=attempts,
        max_attempts=max_attempts,
        stalls=stalls,
        worker_id=worker_id,
        progress=progress,
        progress_detail=None if detail is None else _decode_any(detail),
        result=None if result is None else _decode_any(result),
        error=error,
        traceback=traceback,
        options=options_from(options),
        created_at=from_ms(created_at),
        run_at=from_ms(run_at),
        started_at=ms_to_datetime(started_at),
        finished_at=ms_to_datetime(finished_at),
    )


_decode_schedule = msgspec.json.Decoder(Schedule).decode
_reported: set[tuple[str, bytes]] = set()  # unreadable specs already logged (bounded)


def schedules_from(
    rows: Iterable[tuple[str, bytes, int | None, int]],
) -> list[tuple[Schedule, Fired]]:
    """Each readable schedule of ``(id, spec, last tick, ticks)`` rows with
    its ticks; one that cannot be read is skipped, and logged once, so the
    others keep firing."""
    found = []
    for schedule_id, spec, last, ticks in rows:
        try:
            found.append((_decode_schedule(spec), Fired(last, ticks)))
        except Exception as exc:
            if (schedule_id, spec) not in _reported and len(_reported) < 1000:
                _reported.add((schedule_id, spec))
                log.warning(
                    "schedule %r: unreadable record, skipped: %s: %s",
                    schedule_id,
                    type(exc).__name__,
                    exc,
                )
    return found
