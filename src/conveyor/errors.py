"""Every exception Conveyor raises, in one flat tree.

``ConveyorError`` is the root. Driver errors (``sqlite3.OperationalError``,
``redis.exceptions.*``) never leak out of a backend: they are mapped to
``BackendError`` or ``BackendUnavailable`` at the backend boundary.

What task code raises to steer its own retries (``Retry``, ``NonRetryable``,
``RateLimited``) lives in ``conveyor.retry``, beside the backoff policies.
This module is a leaf: it imports nothing from Conveyor.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConfigurationError",
    "ConveyorError",
    "InvalidArguments",
    "InvalidInput",
    "JobFailed",
    "JobNotFound",
    "JobTimeout",
    "PayloadTooLarge",
    "QueueBusy",
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


class QueueBusy(ConveyorError):
    """``obliterate`` refused: jobs of the queue are running (pass ``force``)."""

    def __init__(self, queue: str, active: int) -> None:
        super().__init__(
            f"queue {queue!r} has {active} active jobs: stop its workers, or obliterate"
            " with force to remove them too"
        )
        self.queue = queue
        self.active = active


class BackendError(ConveyorError):
    """The store answered with an error Conveyor did not expect."""


class BackendUnavailable(BackendError):
    """The store cannot be reached (or stayed locked) right now; retrying later may work."""


class JobTimeout(ConveyorError, TimeoutError):
    """A job ran longer than its ``timeout`` (counted as a failed attempt), or
    did not finish within the time a caller waited for it."""


class JobFailed(ConveyorError):
    """``result()`` of a job that failed for good or was cancelled."""

    def __init__(self, job_id: str, state: str, error: str | None) -> None:
        super().__init__(f"job {job_id} {state}: {error}")
        self.job_id = job_id
        self.state = state
        self.error = error


class SandboxError(ConveyorError):
    """A sandboxed job's child process died, or raised an error of this name."""
