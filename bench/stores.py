"""The job stores the bench measures, and the servers it starts for them.

- ``sqlite``: a new database file in its own folder for every phase.
- ``redis``: a private ``redis-server`` (loopback, free port, AOF everysec, in a
  temporary directory), ``FLUSHALL`` and ``CONFIG RESETSTAT`` before every phase.
- ``cluster``: a private 3-master Redis Cluster (``tests/redis_server.py``), the
  same on each node; Conveyor's keys share one hash slot, so one node does the work.

Whatever the store, the I/O job talks to another private ``redis-server`` of the
bench's own (no AOF), started the first time a phase needs it. The parent reads
progress through Conveyor's public API (``app.counts``), never from the keys.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conveyor import Conveyor, JobState
from jobs import IO_KEY, QUEUE, build_app
from workers import cpu_seconds, log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for tests/
from tests.redis_server import RedisCluster, RedisServer, server_binary

BACKENDS = ("sqlite", "redis", "cluster")
POLL_S = 0.05  # SQLite: the parent's app.counts() every 50 ms
REDIS_POLL_S = 0.02
OWN_COMMANDS = ("info", "config")  # the bench's own INFO and CONFIG RESETSTAT
UNFINISHED = (JobState.WAITING, JobState.DELAYED, JobState.ACTIVE, JobState.WAITING_CHILDREN)


def sqlite_url(db_path: Path) -> str:
    return f"sqlite:///{db_path.resolve()}"


class Store:
    """One phase's empty job store, and how the parent reads progress from it."""

    poll_s = POLL_S

    def __init__(self, url: str) -> None:
        self.url = url
        self._app: Conveyor | None = None

    async def app(self) -> Conveyor:
        """The parent's own app for reading (built like the worker's)."""
        if self._app is None:
            self._app = build_app(self.url).app
            await self._app.connect()
        return self._app

    async def counts(self) -> dict[JobState, int]:
        return await (await self.app()).counts(QUEUE)

    async def unfinished(self) -> tuple[int, dict[JobState, int]]:
        """Jobs waiting, delayed, active or waiting for children, and all the counts."""
        counts = await self.counts()
        return sum(counts[s] for s in UNFINISHED), counts

    def command_stats(self) -> dict[str, int] | None:
        """Calls per server command since the last reset (Redis only), all nodes summed."""
        return None

    def reset_command_stats(self) -> None:
        return None

    def server_cpu_s(self) -> float | None:
        """CPU time the server processes have used so far (Redis only)."""
        return None

    async def poll_cost(self) -> dict[str, float] | None:
        """Server commands one ``counts()`` poll costs (Redis only): measured, so
        that the parent's polls can be subtracted from a phase's figures."""
        return None

    async def close(self) -> None:
        if self._app is not None:
            await self._app.close()
            self._app = None


class SQLiteStore(Store):
    def __init__(self, tmp: Path, name: str) -> None:
        self.db_path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp)) / "bench.db"
        super().__init__(sqlite_url(self.db_path))


def diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    calls = {k: v - before.get(k, 0) for k, v in after.items() if k not in OWN_COMMANDS}
    return {k: v for k, v in calls.items() if v}


class RedisStore(Store):
    """The private server(s), emptied for this phase."""

    poll_s = REDIS_POLL_S

    def __init__(self, url: str, nodes: list[RedisServer]) -> None:
        super().__init__(url)
        self.nodes = nodes
        for node in nodes:
            with node.client() as client:
                client.flushall()
                client.config_resetstat()

    def reset_command_stats(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.config_resetstat()

    def command_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for node in self.nodes:
            with node.client() as client:
                raw = client.info("commandstats")
            for name, value in raw.items():
                if isinstance(value, dict):
                    key = name.removeprefix("cmdstat_")
                    total[key] = total.get(key, 0) + int(value["calls"])
        return total

    def server_cpu_s(self) -> float | None:
        procs = [node.proc for node in self.nodes]
        if any(p is None for p in procs):
            return None
        return sum(cpu_seconds(p.pid) for p in procs if p is not None)

    async def poll_cost(self) -> dict[str, float]:
        for _ in range(3):  # connections and (on a Cluster) the slot map first
            await self.counts()
        polls = 10
        before = self.command_stats()
        for _ in range(polls):
            await self.counts()
        # Whole commands per poll: a stray HELLO of a new pooled connection is not one.
        per_poll = {k: round(v / polls) for k, v in diff(before, self.command_stats()).items()}
        return {k: v for k, v in per_poll.items() if v}


class Stores:
    """Makes each phase's fresh store; owns the servers."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.servers: list[RedisServer] = []
        self.cluster: RedisCluster | None = None
        self.url = ""
        self.io: RedisServer | None = None

    def __enter__(self) -> Stores:
        if self.backend == "redis":
            server = RedisServer(self.tmp / "redis")
            server.start()
            self.servers, self.url = [server], server.url
            log(f"redis-server started: {self.url} (AOF everysec, in {server.directory})")
        elif self.backend == "cluster":
            self.cluster = RedisCluster(self.tmp / "cluster")
            self.cluster.start()
            self.servers, self.url = self.cluster.nodes, self.cluster.url
            ports = ",".join(str(n.port) for n in self.servers)
            log(f"redis cluster started: 3 masters on {ports}, URL {self.url}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        else:
            for server in self.servers:
                server.stop()
        if self.io is not None:
            self.io.stop()
        if self.servers or self.io is not None:
            log("redis servers stopped")

    def fresh(self, name: str) -> Store:
        if self.servers:
            return RedisStore(self.url, self.servers)
        return SQLiteStore(self.tmp, name)

    def io_url(self) -> str:
        """The I/O job's own server, started on first use and emptied for each phase."""
        if self.io is None:
            self.io = RedisServer(self.tmp / "io", extra=("--appendonly", "no"))
            self.io.start()
            log(f"the I/O job's redis-server started: {self.io.url}")
        self.io.flushall()
        return self.io.url

    def io_count(self) -> int:
        """How many INCRs the I/O jobs made since ``io_url()`` emptied the server."""
        if self.io is None:
            return 0
        with self.io.client() as client:
            return int(client.get(IO_KEY) or 0)

    def info(self) -> dict[str, Any]:
        if not self.servers:
            return {}
        with self.servers[0].client() as client:
            info = client.info("server")
        return {
            "redis_server": info.get("redis_version"),
            "redis_binary": server_binary(),
            "redis_py": __import__("redis").__version__,
            "hiredis": _hiredis_version(),
            "redis_nodes": len(self.servers),
        }


def _hiredis_version() -> str | None:
    try:
        import hiredis  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return str(hiredis.__version__)


@contextlib.contextmanager
def one_store(backend: str, name: str) -> Iterator[str]:
    """The URL of one fresh store of ``backend``, its servers and files gone after."""
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp,
        Stores(backend, Path(tmp)) as stores,
    ):
        yield stores.fresh(name).url
