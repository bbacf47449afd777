"""Every exception Conveyor raises, in one flat tree.

``ConveyorError`` is the root. Driver errors (``sqlite3.OperationalError``,
``redis.exceptions.*``) never leak out of a backend: they are mapped to
``BackendError`` or ``BackendUnavailable`` at the backend boundary.

Three exceptions are for task code to raise: ``Retry`` (try again, counted as
an attempt), ``NonRetryable`` (fail now, skip the remaining attempts) and
``RateLimited`` (the service called said "too many requests": try later, no
attempt counted, and hold back the queue or the group meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.retry import Backoff

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigurationError",
    "ConveyorError",
    "InvalidArguments",
    "InvalidInput",
    "JobNotFound",
    "JobTimeout",
    "NonRetryable",
    "PayloadTooLarge",
    "RateLimited",
    "Retry",
    "SandboxError",
    "ScheduleNotFound",
    "UnknownTask",
]


class ConveyorError(Exception):
    """Root of every error Conveyor raises."""


class ConfigurationError(ConveyorError):
    """The app, a task or a backend URL is set up wrongly (found at start, not per job)."""


class InvalidInput(ConveyorError, ValueError):
    """A value given to Conveyor is not acceptable; ``field`` names which one.

    Raised before anything is written, so the store is unchanged.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidArguments(InvalidInput):
    """Job arguments do not match the task's signature or type hints."""


class PayloadTooLarge(InvalidInput):
    """The encoded arguments exceed the app's ``max_payload_bytes``."""


class UnknownTask(InvalidInput):
    """No task of that name is registered on the app."""

    def __init__(self, name: str) -> None:
        super().__init__("task", f"no task named {name!r} is registered")
        self.name = name


class ScheduleNotFound(ConveyorError, LookupError):
    """No schedule with that id is in the store."""


class JobNotFound(ConveyorError, LookupError):
    """No job with that id is in the store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class BackendError(ConveyorError):
    """The store answered with an error Conveyor did not expect."""


class BackendUnavailable(BackendError):
    """The store cannot be reached (or stayed locked) right now; retrying later may work."""


class JobTimeout(ConveyorError, TimeoutError):
    """A job ran longer than its ``timeout``; counted as a failed attempt."""


class SandboxError(ConveyorError):
    """A sandboxed job's child process died, or raised an error of this name."""


class Retry(ConveyorError):
    """Raise from a task to run it again.

    The retry counts as an attempt; once attempts are exhausted the job fails.
    ``delay`` (seconds) overrides the task's backoff for this retry. The static
    methods build backoff policies for ``@app.task(backoff=...)``.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        from conveyor import validate  # validate imports this module

        super().__init__(reason)
        self.delay = None if delay is None else validate.seconds("delay", delay)

    @staticmethod
    def fixed(delay: float) -> Backoff:
        """Wait ``delay`` seconds before every retry."""
        from conveyor.retry import Backoff

        return Backoff.fixed(delay)

    @staticmethod
    def exponential(
        base: float, *, factor: float = 2.0, cap: float = 3600.0, jitter: bool = True
    ) -> Backoff:
        """Wait ``base * factor**(attempt-1)`` seconds, at most ``cap``, with full jitter."""
        from conveyor.retry import Backoff

        return Backoff.exponential(base, factor=factor, cap=cap, jitter=jitter)


class NonRetryable(ConveyorError):
    """Raise from a task to fail the job at once, whatever attempts remain."""


class RateLimited(ConveyorError):
    """Raise from a task when the service it calls answers "too many requests"
    (an HTTP 429 with ``Retry-After``, say).

    The job goes back to ``waiting`` without spending an attempt, and for
    ``delay`` seconds no worker starts a job of its queue (with
    ``group=True``, of its group; a job without a group then holds its
    queue). Other queues and groups run on.
    """

    def __init__(self, delay: float, *, group: bool = False, reason: str = "rate limited") -> None:
        from conveyor import validate  # validate imports this module

        super().__init__(reason)
        self.delay = validate.seconds("delay", delay, allow_zero=False)
        self.group = bool(group)
