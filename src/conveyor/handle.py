"""``JobHandle``: what an enqueue returns, and the ways to read its job."""

from __future__ import annotations

import asyncio
from typing import Protocol

from conveyor.errors import JobTimeout
from conveyor.job import Job

__all__ = ["JobHandle", "JobSource"]


class JobSource(Protocol):
    """Where a handle reads its job from (the app)."""

    async def get_job(self, job_id: str) -> Job: ...


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

    async def wait(self, timeout: float = 60.0, *, poll: float = 0.05) -> Job:
        """Poll until the job has finished; raise ``JobTimeout`` after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = await self.get()
            if job.state.finished:
                return job
            if loop.time() >= deadline:
                raise JobTimeout(f"job {self.id} still {job.state} after {timeout}s")
            await asyncio.sleep(poll)
