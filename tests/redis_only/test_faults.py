"""Redis-only: faults that exist only where the store is a separate server that
can be killed, restarted or have its script cache flushed. (SQLite is a file
in the worker's own process; its crash tests kill workers instead.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from conveyor import BackendUnavailable, Conveyor, JobState, Worker, WorkerSettings
from conveyor.backends.redis import peek, waiting
from conveyor.backends.values import QueueSlots, Taker

from ..conftest import eventually
from ..redis_server import RedisServer
from .conftest import conveyor


@pytest.fixture
async def app(server: RedisServer) -> AsyncIterator[Conveyor]:
    app = Conveyor(server.url)

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def nap(seconds: float) -> int:
        NAPS.append(seconds)
        await asyncio.sleep(seconds)
        return len(NAPS)

    NAPS.clear()
    async with app:
        yield app


NAPS: list[float] = []  # one entry per run of the nap task


async def test_flushed_script_cache_is_reloaded_under_load(
    app: Conveyor, server: RedisServer
) -> None:
    worker = Worker(app, WorkerSettings(concurrency=20))
    running = asyncio.create_task(worker.run())
    try:
        handles = []
        for batch in range(10):
            handles += await app.enqueue_many([app.tasks["add"].call(batch, i) for i in range(100)])
            await asyncio.to_thread(server.flush_scripts)  # as after a restart or failover
        done = [await h.wait(20) for h in handles]
    finally:
        worker.stop()
        await running
    assert [j.state for j in done] == ["completed"] * 1000
    assert done[-1].result == 9 + 99


async def test_lone_calls_reload_flushed_scripts_and_reconnect_after_a_restart(
    app: Conveyor, server: RedisServer
) -> None:
    """Lone script calls go on a connection held for them (direct.py): a
    flushed script cache and a restarted server cost them nothing but a
    retry, as they cost the client's own calls."""
    add = app.tasks["add"]
    first = await add.enqueue(1, 1)
    await asyncio.to_thread(server.flush_scripts)
    second = await add.enqueue(1, 2)
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(server.start)  # AOF on: the jobs are back
    third = await add.enqueue(1, 3)
    assert [(await app.get_job(h.id)).state for h in (first, second, third)] == ["waiting"] * 3
    await asyncio.to_thread(server.kill)
    with pytest.raises(BackendUnavailable):
        await add.enqueue(1, 4)
    await asyncio.to_thread(server.start)
    assert (await add.enqueue(1, 5)).created


@pytest.mark.parametrize("server", [("--appendfsync", "always")], indirect=True)
async def test_sigkilled_redis_with_aof_always_keeps_every_acknowledged_job(
    app: Conveyor, server: RedisServer
) -> None:
    # With `appendfsync everysec` (the test default, and Redis's), Redis may
    # answer writes it has not yet handed to the kernel while a slow fsync
    # runs, so a crash can lose about the last two seconds of them; only
    # `always` makes every acknowledged write survive a SIGKILL.
    add = app.tasks["add"]
    acknowledged = []
    for batch in range(5):
        acknowledged += [
            h.id for h in await app.enqueue_many([add.call(batch, i) for i in range(200)])
        ]
    claimed = await app.backend.claim(
        slots=[QueueSlots(("default",), 50)], worker_id="w", lease_ms=60_000
    )
    for job in claimed[:25]:
        assert await app.backend.complete(
            job_id=job.job.id, token=job.token, result=b"1", retention=add.options.keep_completed
        )
    await asyncio.to_thread(server.kill)
    with pytest.raises(BackendUnavailable):
        await app.get_job(acknowledged[0])
    await asyncio.to_thread(server.start)
    counts = await app.counts("default")
    assert counts[JobState.WAITING] == 950
    assert counts[JobState.ACTIVE] == 25 and counts[JobState.COMPLETED] == 25
    assert {j.id for j in await app.list_jobs("waiting", limit=1000)} | {
        c.job.id for c in claimed
    } == set(acknowledged)


async def test_worker_rides_out_an_outage_and_resumes(
    app: Conveyor, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(app, WorkerSettings(concurrency=5))
    running = asyncio.create_task(worker.run())
    try:
        first = await app.tasks["add"].enqueue(1, 1)
        assert (await first.wait(10)).result == 2
        await asyncio.to_thread(server.kill)
        with pytest.raises(BackendUnavailable):
            await app.tasks["add"].enqueue(2, 2)

        async def outage_seen() -> bool:  # claims fail and back off; the worker lives on
            return "store unreachable" in caplog.text

        await eventually(outage_seen)
        assert not running.done()
        await asyncio.to_thread(server.start)
        after = await app.tasks["add"].enqueue(3, 3)
        assert (await after.wait(10)).result == 6  # claiming works again, no restart needed
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)


async def test_a_wait_whose_leave_failed_gets_the_job_handed_to_it_later(
    app: Conveyor, server: RedisServer
) -> None:
    """An idle wait registered for hand-offs, and its leave failed: the
    server died. Restarted, it still holds the registration and an enqueue
    hands it a job; the next wait must take that job at once, not leave it
    active until its lease runs out (as it did, now and then, in CI)."""
    with server.client() as client:  # the registration survives the kill
        client.config_set("appendfsync", "always")
    conn = app.backend._conn  # type: ignore[attr-defined]
    taker = Taker(worker_id="w1", lease_ms=30_000, queues=("default",))
    wake = conn.keys.wake("gone")
    registration = waiting._registration(wake, 5.0, taker)  # lapses in 6 s
    await peek.peek(conn, [("default", 0)], registration)
    await asyncio.to_thread(server.kill)
    with pytest.raises(BackendUnavailable):
        await waiting.leave(conn, wake, registration)
    await asyncio.to_thread(server.start)
    handle = await app.tasks["add"].enqueue(3, 3)
    assert (await app.get_job(handle.id)).state is JobState.ACTIVE  # handed to the gone wait
    started = time.monotonic()
    again = await app.backend.wait_for_jobs(queues=["default"], timeout_s=5.0, taker=taker)
    assert [c.job.id for c in again] == [handle.id]
    assert time.monotonic() - started < 2


async def test_risky_configuration_is_warned_about_in_info(tmp_path: Path) -> None:
    risky = ("--appendonly", "no", "--maxmemory-policy", "allkeys-lru")
    volatile = RedisServer(tmp_path / "volatile", extra=risky)
    volatile.start()
    try:
        app = Conveyor(volatile.url)
        async with app:
            assert any("maxmemory-policy" in w for w in app.backend.warnings)
            assert any("persistence is off" in w for w in app.backend.warnings)
        async with app:  # connecting again does not find (and log) them again
            assert len(app.backend.warnings) == 2
        info = await asyncio.to_thread(conveyor, "info", "--url", volatile.url)
        assert info.returncode == 0, info.stderr
        assert "warning: maxmemory-policy" in info.stdout
    finally:
        volatile.stop()


async def test_bundled_redis_server_is_used_without_one_on_path_and_runs_our_scripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)  # as on a machine without Redis
    bundled = RedisServer(tmp_path / "bundled")
    bundled.start()
    try:
        with bundled.client() as client:
            version = client.info("server")["redis_version"]
        app = Conveyor(bundled.url)

        @app.task
        async def add(a: int, b: int) -> int:
            return a + b

        async with app:
            worker = Worker(app, WorkerSettings())
            running = asyncio.create_task(worker.run())
            try:
                now = await add.enqueue(1, 2)
                later = await add.configure(delay=0.2).enqueue(3, 4)
                assert [(await h.wait(10)).result for h in (now, later)] == [3, 7]
            finally:
                worker.stop()
                await running
    finally:
        bundled.stop()
    assert version.startswith(("6.2", "7."))


async def test_unix_socket_and_acl_user_urls(tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    guarded = RedisServer(tmp_path / "guarded", extra=("--unixsocket", str(socket_path)))
    guarded.start()
    try:
        with guarded.client() as admin:  # a user who may touch only Conveyor's keys
            admin.acl_setuser(
                "worker",
                enabled=True,
                passwords=["+s3cret"],
                keys=["cv:*"],
                commands=["+@all", "-@dangerous", "+info", "+config|get"],
            )
        urls = [
            f"unix://{socket_path}?namespace=sock",
            f"redis://worker:s3cret@127.0.0.1:{guarded.port}/0?namespace=acl",
        ]
        for url in urls:
            app = Conveyor(url)

            @app.task
            async def add(a: int, b: int) -> int:
                return a + b

            async with app:
                handle = await add.enqueue(2, 3)
                (claimed,) = await app.backend.claim(
                    slots=[QueueSlots(("default",), 1)], worker_id="w", lease_ms=1000
                )
                assert claimed.job.id == handle.id
        app = Conveyor(urls[1])
        async with app:  # the ACL holds: keys outside Conveyor's are refused
            with pytest.raises(redis.exceptions.NoPermissionError):
                await app.backend.client.set("elsewhere", "1")
    finally:
        guarded.stop()


@pytest.mark.timeout(60)
async def test_an_outage_longer_than_the_lease_leaves_live_jobs_alone(
    app: Conveyor, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down for longer than the lease while a job runs: when it returns
    every lease looks expired, yet a second worker that checks for stalls ten
    times a second does not take the job (it waits a renewal interval after
    the outage, and the holder renews within half a second), the job runs
    once, the log got a line per few seconds at most, and work enqueued after
    the return starts at once."""
    outage_s, lease_s = 4.0, 3.0
    holder = Worker(app, WorkerSettings(concurrency=2, lease_s=lease_s))
    checker = Worker(app, WorkerSettings(queues=("other",), reclaim_interval_s=0.1))
    running = [asyncio.create_task(w.run()) for w in (holder, checker)]
    try:
        handle = await app.tasks["nap"].enqueue(outage_s + 2.0)

        async def napping() -> bool:
            return NAPS != []

        await eventually(napping)
        await asyncio.to_thread(server.kill)
        caplog.clear()
        await asyncio.sleep(outage_s)  # the outage itself, not a wait for a condition
        down_lines = [r for r in caplog.records if r.levelname == "WARNING"]
        await asyncio.to_thread(server.start)
        job = await handle.wait(20)
        assert (job.state, job.result, job.stalls, job.attempts) == ("completed", 1, 0, 1)
        assert [outage_s + 2.0] == NAPS  # ran once
        # Store-unreachable lines: one at once, then one per 5 s, per reporter
        # (each worker's loop and lease keeper).
        assert 2 <= len(down_lines) <= 6, [r.getMessage() for r in down_lines]
        started = asyncio.get_running_loop().time()
        after = await app.tasks["add"].enqueue(3, 3)
        assert (await after.wait(10)).result == 6
        assert asyncio.get_running_loop().time() - started < 2.0
    finally:
        for w in (holder, checker):
            w.stop()
        await asyncio.wait_for(asyncio.gather(*running), 15)


@pytest.mark.timeout(60)
async def test_shutdown_while_redis_is_down_ends_within_the_grace_period(
    app: Conveyor, server: RedisServer
) -> None:
    """The running job cannot be released (Redis is gone) and its lease brings
    it back later; the worker still stops on time instead of retrying."""
    grace_s = 1.0
    worker = Worker(app, WorkerSettings(concurrency=2, shutdown_grace_s=grace_s))
    running = asyncio.create_task(worker.run())
    handle = await app.tasks["nap"].enqueue(30.0)

    async def napping() -> bool:
        return NAPS != []

    await eventually(napping)
    await asyncio.to_thread(server.kill)
    loop = asyncio.get_running_loop()
    stopping = loop.time()
    worker.stop()
    await asyncio.wait_for(running, 15)
    # The grace period, the extra wait for outcomes being written, and the
    # lease keeper's renewal under way (a refused connection fails at once).
    assert loop.time() - stopping < grace_s + 3.0
    await asyncio.to_thread(server.start)
    job = await app.get_job(handle.id)
    assert (job.state, job.attempts) == ("active", 1)  # its lease will bring it back


async def test_an_active_entry_whose_job_is_gone_is_cleared_by_the_stall_check(
    app: Conveyor, server: RedisServer
) -> None:
    """Redis-only: a job hash can vanish under an active lease (eviction, a
    manual DEL); its entry must not come back at every stall check forever."""
    handle = await app.tasks["add"].enqueue(1, 1)
    (claimed,) = await app.backend.claim(
        slots=[QueueSlots(("default",), 1)], worker_id="w", lease_ms=1000
    )
    with server.client() as raw:
        deleted = [key for key in raw.scan_iter("*") if handle.id.encode() in key]
        assert deleted and raw.delete(*deleted) == len(deleted)
    app.clock.advance(2)
    suspects = await app.backend.expired_leases(limit=10)
    assert [job_id for job_id, _ in suspects] == [claimed.job.id]
    result = await app.backend.reclaim_expired(max_stalls=1, limit=10, suspects=suspects)
    assert (result.requeued, result.failed) == ([], [])
    assert await app.backend.expired_leases(limit=10) == []


async def test_tls_to_a_plain_text_server_fails_within_the_connect_timeout(
    server: RedisServer,
) -> None:
    """The TLS handshake gets no answer: each of the three tries gives up at
    CONNECT_TIMEOUT_S (2 s), not at the 10 s socket timeout."""
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="Timeout connecting"):
        async with Conveyor(server.url.replace("redis://", "rediss://")) as app:
            await app.counts("default")
    assert time.monotonic() - began < 9.0
