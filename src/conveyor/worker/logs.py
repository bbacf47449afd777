"""Logging with job context: plain text or one JSON object per line.

A library must not configure the root logger, so Conveyor only logs to the
``conveyor.*`` loggers; ``conveyor worker`` (an application) sets logging up
with ``configure()``. ``JobContextFilter`` adds the running job's id, task,
queue and attempt to every record logged while a job runs, including records
from the job's own code on any logger the filter is attached to.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from conveyor.context import running_job

__all__ = ["JobContextFilter", "JsonFormatter", "configure"]

_JOB_FIELDS = ("job_id", "task", "queue", "attempt")


class JobContextFilter(logging.Filter):
    """Adds ``job_id``, ``task``, ``queue`` and ``attempt`` (``None`` outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = running_job()
        job = context.job if context is not None else None
        record.job_id = job.id if job else None
        record.task = job.task if job else None
        record.queue = job.queue if job else None
        record.attempt = job.attempts if job else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message,
    job context when there is one, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _JOB_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        job_id = getattr(record, "job_id", None)
        return f"{line} [job {job_id}]" if job_id else line


def configure(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Set up the root logger for a worker process (stderr, job context added)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
