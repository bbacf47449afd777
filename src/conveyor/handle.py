"""``JobHandle``: what an enqueue returns, and the ways to read its job."""

from __future__ import annotations

from typing import Any, Protocol

from conveyor.job import Job

__all__ = ["JobHandle", "JobSource"]


class JobSource(Protocol):
    """Where a handle reads its job from (the app)."""

    async def get_job(self, job_id: str) -> Job: ...

    async def wait(self, job_id: str, timeout: float = ...) -> Job: ...

    async def result(self, job_id: str, timeout: float = ...) -> Any: ...


class JobHandle:
    """What ``enqueue`` returns: the job id, whether this call created it, and ways to read it."""

    __slots__ = ("app", "created", "id")

    def __init__(self, app: JobSource, job_id: str, *, created: bool) -> None:
        self.app = app
        self.id = job_id
        self.created = created

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} created={self.created}>"

    async def get(self) -> Job:
        return await self.app.get_job(self.id)

    async def wait(self, timeout: float = 60.0) -> Job:
        """The job once it has finished (completed, failed or cancelled),
        woken by its events; ``JobTimeout`` after ``timeout`` seconds."""
        return await self.app.wait(self.id, timeout)

    async def result(self, timeout: float = 60.0) -> Any:
        """The job's result once it has completed; ``JobFailed`` if it failed
        for good or was cancelled, ``JobTimeout`` after ``timeout`` seconds."""
        return await self.app.result(self.id, timeout)
