"""Conveyor: an asyncio-native background job queue.

```python
from conveyor import Conveyor, Retry, current_job

app = Conveyor("sqlite:///conveyor.db")

@app.task(queue="email", retries=3, backoff=Retry.exponential(5.0), timeout=30)
async def send_email(to: str, template: str) -> None: ...

handle = await send_email.enqueue("a@b.c", "welcome")
job = await app.get_job(handle.id)
```
"""

from conveyor.app import Conveyor
from conveyor.backends.base import Backend
from conveyor.backends.values import NewJob, QueueInfo, WorkerInfo
from conveyor.clock import Clock
from conveyor.context import JobContext, current_job
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    InvalidArguments,
    InvalidInput,
    JobFailed,
    JobNotFound,
    JobTimeout,
    PayloadTooLarge,
    QueueBusy,
    SandboxError,
    UnknownTask,
)
from conveyor.events import EventKind, EventSettings, JobEvent
from conveyor.flow import Flow, batch, chain, flow
from conveyor.handle import JobHandle
from conveyor.job import ChildOutcome, ChildOutcomes, Job, JobState, LogEntry, Retention
from conveyor.limits import Limits, Rate
from conveyor.retry import Backoff, NonRetryable, RateLimited, Retry
from conveyor.settings import WorkerSettings
from conveyor.stats import Stats, StatsPoint
from conveyor.sync import SyncConveyor
from conveyor.task import Call, Task
from conveyor.worker import Worker

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "Backoff",
    "Call",
    "ChildOutcome",
    "ChildOutcomes",
    "Clock",
    "ConfigurationError",
    "Conveyor",
    "ConveyorError",
    "EventKind",
    "EventSettings",
    "Flow",
    "InvalidArguments",
    "InvalidInput",
    "Job",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobState",
    "JobTimeout",
    "Limits",
    "LogEntry",
    "NewJob",
    "NonRetryable",
    "PayloadTooLarge",
    "QueueBusy",
    "QueueInfo",
    "Rate",
    "RateLimited",
    "Retention",
    "Retry",
    "SandboxError",
    "Stats",
    "StatsPoint",
    "SyncConveyor",
    "Task",
    "UnknownTask",
    "Worker",
    "WorkerInfo",
    "WorkerSettings",
    "batch",
    "chain",
    "current_job",
    "flow",
]
