"""The stores: one fresh store per phase, and the Redis server when there is one."""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobState
from jobs import QUEUE, build_app, to_ms
from workers import cpu_seconds, log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests/
from tests.redis_server import RedisServer, server_binary

POLL_S = 0.05
REDIS_POLL_S = 0.02


def sqlite_url(db_path: Path) -> str:
    return f"sqlite:///{db_path.resolve()}"


def db_query(db_path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


class Store:
    """One phase's empty job store, and how the parent reads results from it."""

    url: str
    poll_s: float = POLL_S

    async def count_completed(self) -> int:
        raise NotImplementedError

    async def completed_span(self) -> tuple[int, int, int]:
        """Completed jobs, the earliest ``started_at`` and the latest ``finished_at`` (ms)."""
        raise NotImplementedError

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        """Per completed job: id, ``created_at``, ``started_at`` (ms) and its result."""
        raise NotImplementedError

    def command_stats(self) -> dict[str, int] | None:
        """Calls per server command since the last reset (Redis only)."""
        return None

    def reset_command_stats(self) -> None:
        return None

    def server_cpu_s(self) -> float | None:
        """CPU time the server process has used so far (Redis only)."""
        return None

    async def close(self) -> None:
        return None


class SQLiteStore(Store):
    """A new database file in its own folder (nothing is reused between phases)."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.db_path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)) / "bench.db"
        self.url = sqlite_url(self.db_path)

    async def count_completed(self) -> int:
        rows = db_query(
            self.db_path,
            "SELECT count(*) FROM jobs WHERE queue = ? AND state = 'completed'",
            (QUEUE,),
        )
        return int(rows[0][0])

    async def completed_span(self) -> tuple[int, int, int]:
        ((completed, first_start, last_finish),) = db_query(
            self.db_path,
            "SELECT count(*), min(started_at), max(finished_at) FROM jobs"
            " WHERE queue = ? AND state = 'completed'",
            (QUEUE,),
        )
        return int(completed), int(first_start), int(last_finish)

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        rows = db_query(
            self.db_path,
            "SELECT id, created_at, started_at, result FROM jobs WHERE state = 'completed'",
        )
        return [(job_id, c, s, json.loads(r)) for job_id, c, s, r in rows]


def redis_info(server: RedisServer) -> dict[str, Any]:
    with server.client() as client:
        info = client.info("server")
    return {
        "redis_server": info.get("redis_version"),
        "redis_binary": server_binary(),
        "redis_py": __import__("redis").__version__,
        "hiredis": _hiredis_version(),
    }


def _hiredis_version() -> str | None:
    try:
        import hiredis  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(hiredis.__version__)


class RedisStore(Store):
    """The private server, emptied (``FLUSHALL``) for this phase; results are read
    through Conveyor's public API, never from the keys."""

    poll_s = REDIS_POLL_S

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.url = server.url
        with server.client() as client:
            client.flushall()
            client.config_resetstat()
        self._app: Conveyor | None = None

    async def app(self) -> Conveyor:
        if self._app is None:
            self._app = build_app(self.url).app
            await self._app.connect()
        return self._app

    async def count_completed(self) -> int:
        counts = await (await self.app()).counts(QUEUE)
        return counts[JobState.COMPLETED]

    async def _completed_jobs(self) -> list[Any]:
        app = await self.app()
        total = await self.count_completed()
        if total == 0:
            return []
        return await app.list_jobs(JobState.COMPLETED, queue=QUEUE, limit=total)

    async def completed_span(self) -> tuple[int, int, int]:
        jobs = await self._completed_jobs()
        if not jobs:
            return 0, 0, 0
        first = min(to_ms(j.started_at) for j in jobs)
        last = max(to_ms(j.finished_at) for j in jobs)
        return len(jobs), first, last

    async def completed_stamps(self) -> list[tuple[str, int, int, Any]]:
        return [
            (j.id, to_ms(j.created_at), to_ms(j.started_at), j.result)
            for j in await self._completed_jobs()
        ]

    def reset_command_stats(self) -> None:
        with self.server.client() as client:
            client.config_resetstat()

    def server_cpu_s(self) -> float | None:
        return None if self.server.proc is None else cpu_seconds(self.server.proc.pid)

    def command_stats(self) -> dict[str, int]:
        with self.server.client() as client:
            raw = client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in raw.items()
            if isinstance(value, dict)
        }

    async def close(self) -> None:
        if self._app is not None:
            await self._app.close()
            self._app = None


class Stores:
    """Makes each phase's fresh store; owns the Redis server when there is one."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.redis: RedisServer | None = None

    def __enter__(self) -> Stores:
        if self.backend == "redis":
            self.redis = RedisServer(self.tmp / "redis")
            self.redis.start()
            log(f"redis-server started: {self.redis.url} (AOF on, in {self.redis.directory})")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.redis is not None:
            self.redis.stop()
            log("redis-server stopped")

    def fresh(self, name: str) -> Store:
        if self.redis is not None:
            return RedisStore(self.redis)
        return SQLiteStore(self.tmp, name)

    def info(self) -> dict[str, Any]:
        return redis_info(self.redis) if self.redis is not None else {}
