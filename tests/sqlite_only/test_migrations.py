"""SQLite-only: the numbered migrations and the fresh schema must agree (the
Redis backend has no schema); a file that is not a store this code knows is
refused untouched; a read-only or hand-edited store fails cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conveyor import ConfigurationError, Conveyor, JobState, Worker, WorkerSettings
from conveyor.backends.sqlite import connection

from ..conftest import eventually

ROOT = Path(__file__).resolve().parents[2]

Schema = tuple[list[tuple[str, str, str]], int, list[tuple[str, int]]]


def _schema(path: Path, *, fresh: bool) -> Schema:
    conn = connection.connect(str(path))
    try:
        connection.migrate(conn, fresh_schema=fresh)
        objects = _listed(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        counters = conn.execute("SELECT * FROM counters ORDER BY name").fetchall()
        return objects, version, counters
    finally:
        conn.close()


def test_fresh_schema_equals_the_migrated_one(tmp_path: Path) -> None:
    fresh = _schema(tmp_path / "fresh.db", fresh=True)
    migrated = _schema(tmp_path / "migrated.db", fresh=False)
    assert fresh[1] == migrated[1] == connection.migrations()[-1][0]
    assert fresh[2] == migrated[2]
    assert fresh[0] == migrated[0]
    assert {name for _, name, _ in fresh[0]} >= {"jobs", "job_logs", "queues", "workers"}


def test_migrating_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.db"
    first = _schema(path, fresh=True)
    assert _schema(path, fresh=True) == first


def test_database_is_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    conn = connection.connect(str(tmp_path / "db.db"))
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == connection.BUSY_TIMEOUT_MS
    finally:
        conn.close()


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [n for n, _ in connection.migrations()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert all(isinstance(sql, str) and sql.strip() for _, sql in connection.migrations())
    assert sqlite3.sqlite_version_info >= (3, 35)  # RETURNING


def test_migrated_jobs_with_logs_lose_them_when_deleted(tmp_path: Path) -> None:
    """0010 deletes logs only of jobs marked ``logged``: it marks the jobs that
    already have logs, so their logs still go with them."""
    conn = connection.connect(str(tmp_path / "db.db"))
    try:
        for number, sql in connection.migrations():
            if number == 10:
                conn.execute(
                    "INSERT INTO jobs (id, task, queue, state, priority, seq, run_at, payload,"
                    " options, max_attempts, created_at) VALUES ('j', 't', 'q', 'completed',"
                    " 0, 1, 0, '{}', '{}', 1, 0), ('k', 't', 'q', 'completed', 0, 2, 0, '{}',"
                    " '{}', 1, 0)"
                )
                conn.execute("INSERT INTO job_logs (job_id, at, message) VALUES ('j', 0, 'x')")
            connection._run_script(conn, sql)
        conn.execute("DELETE FROM jobs WHERE id = 'j'")
        assert conn.execute("SELECT count(*) FROM job_logs").fetchone()[0] == 0
        assert conn.execute("SELECT logged FROM jobs WHERE id = 'k'").fetchone()[0] == 0
    finally:
        conn.close()


def _file_bytes(path: Path) -> bytes:
    """The database and its write-ahead log (not the -shm index a reader touches)."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_a_store_newer_than_this_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Conveyor(f"sqlite:///{path}") as app:
        await app.counts("default")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = _file_bytes(path)
    latest = connection.migrations()[-1][0]
    with pytest.raises(
        ConfigurationError, match=f"store schema 99 .* newer than this Conveyor \\({latest}\\)"
    ):
        async with Conveyor(f"sqlite:///{path}") as app:
            await app.counts("default")
    assert _file_bytes(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99


async def test_another_applications_database_is_refused_before_any_change(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    before = _file_bytes(path)
    with pytest.raises(ConfigurationError, match="is not a Conveyor store"):
        async with Conveyor(f"sqlite:///{path}") as app:
            await app.counts("default")
    assert _file_bytes(path) == before
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not WAL


def test_a_reading_command_on_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "store.db"
    for argv in (["info"], ["jobs", "list"], ["jobs", "show", "x"], ["schedules", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "conveyor", *argv, "--url", f"sqlite:///{missing}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert (done.returncode, done.stderr) == (1, f"conveyor: error: no store at {missing}\n")
    assert not missing.parent.exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv, to run the command as a user the file is read-only for",
)
def test_a_read_only_store_says_so_in_one_line(tmp_path: Path) -> None:
    """Run as nobody, for whom the store is read-only (and pytest's own
    temporary directory out of reach)."""
    shared = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        shared.chmod(0o755)
        path = shared / "store.db"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor",
                "enqueue",
                "add",
                "--app",
                "tests.apps:app",
                "--args",
                "[1, 2]",
            ],
            cwd=ROOT,
            env={**os.environ, "CONVEYOR_URL": f"sqlite:///{path}"},
            check=True,
            capture_output=True,
            timeout=30,
        )
        for file in shared.iterdir():
            file.chmod(0o444)
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        for url, said in [
            (f"sqlite:///{path}", "sqlite: attempt to write a readonly database"),
            (
                f"sqlite:///{tmp_path}/x.db",
                f"cannot look for a store at {tmp_path}/x.db: Permission denied",
            ),
        ]:
            done = subprocess.run(
                [*as_nobody, sys.executable, "-m", "conveyor", "info", "--url", url],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert (done.returncode, done.stderr) == (1, f"conveyor: error: {said}\n")
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize(
    ("column", "value"), [("priority", "high"), ("created_at", "yesterday"), ("payload", "{")]
)
async def test_a_hand_edited_column_harms_only_its_own_job(
    tmp_path: Path, column: str, value: str
) -> None:
    """A text priority once stopped the whole queue; now every job but the
    edited one runs, and the edited one runs or fails on its own."""
    app = Conveyor(f"sqlite:///{tmp_path / 'store.db'}")

    @app.task
    async def work(n: int) -> int:
        return n

    async with app:
        handles = await app.enqueue_many([work.call(n) for n in range(5)])
        with sqlite3.connect(tmp_path / "store.db") as conn:
            conn.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, handles[2].id))
        worker = Worker(app, WorkerSettings(concurrency=5))
        running = asyncio.create_task(worker.run())
        try:
            for handle in handles[:2] + handles[3:]:
                assert (await handle.wait(10)).state == JobState.COMPLETED

            async def settled() -> bool:
                counts = await app.counts("default")
                return counts[JobState.COMPLETED] + counts[JobState.FAILED] == 5

            await eventually(settled)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)


async def test_a_store_made_at_schema_5_upgrades_and_runs_its_jobs(tmp_path: Path) -> None:
    """fixtures/schema-5.db was written by Conveyor at schema 5 (the commit
    before 0006_dedup.sql) with a waiting job and a delayed one. Opened by
    this code it is migrated in place to the fresh schema, and its jobs run."""
    path = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "schema-5.db", path)
    app = Conveyor(f"sqlite:///{path}")

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app:
        waiting = await app.get_job("old-waiting")
        assert (waiting.state, waiting.args, waiting.priority) == ("waiting", {"a": 2, "b": 3}, 5)
        assert (await app.get_job("old-delayed")).state == "delayed"
        worker = Worker(app, WorkerSettings(concurrency=2))
        running = asyncio.create_task(worker.run())
        try:
            job = await app.tasks["add"].configure().enqueue(4, 4)
            assert (await job.wait(10)).result == 8
            done = await app.get_job("old-waiting")
            assert (done.state, done.result) == ("completed", 5)
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)
    upgraded = _objects(path)
    fresh = _schema(tmp_path / "fresh.db", fresh=True)[0]
    assert upgraded == fresh


def _objects(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        return _listed(conn)


def _listed(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """Every object's SQL as stored, without its comments (they document, and
    an old migration's may name what has since moved) and with spaces made one."""
    return [
        (kind, name, re.sub(r"\s+", " ", re.sub(r"--[^\n]*", "", sql or "")).strip())
        for kind, name, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        )
    ]
