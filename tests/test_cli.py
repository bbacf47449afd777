"""The ``conveyor`` command on a real store: what each subcommand prints and changes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState, Limits, Rate, Retention, Worker, WorkerSettings, flow
from conveyor.backends.values import QueueSlots

from . import apps
from .conftest import db_digest, eventually

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def app(sqlite_url: str) -> AsyncIterator[Conveyor]:
    async with apps.build(sqlite_url) as app:
        yield app


async def conveyor(url: str, *argv: str, code: int = 0, columns: int = 200) -> str:
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conveyor", *argv],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_URL": url, "COLUMNS": str(columns)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == code, proc.stderr
    return proc.stdout


async def test_enqueue_then_list_and_show(app: Conveyor, sqlite_url: str) -> None:
    out = await conveyor(
        sqlite_url,
        "enqueue",
        "add",
        "--app",
        "tests.apps:app",
        "--args",
        "[2, 3]",
        "--priority",
        "7",
        "--job-id",
        "sum-1",
    )
    assert out.strip() == "sum-1"
    again = await conveyor(
        sqlite_url,
        "enqueue",
        "add",
        "--app",
        "tests.apps:app",
        "--kwargs",
        '{"a": 1, "b": 1}',
        "--job-id",
        "sum-1",
    )
    assert "already existed" in again
    job = await app.get_job("sum-1")
    assert (job.args, job.priority, job.state) == ({"a": 2, "b": 3}, 7, "waiting")
    listed = await conveyor(sqlite_url, "jobs", "list", "--state", "waiting", "--json")
    assert [json.loads(line)["id"] for line in listed.splitlines()] == ["sum-1"]
    shown = json.loads(await conveyor(sqlite_url, "jobs", "show", "sum-1"))
    assert shown["args"] == {"a": 2, "b": 3} and shown["logs"] == []
    await conveyor(sqlite_url, "jobs", "show", "nope", code=1)


async def test_jobs_list_shows_whole_ids_and_errors_in_80_columns(
    app: Conveyor, sqlite_url: str
) -> None:
    add = app.tasks["add"]
    first = await add.enqueue(1, 2)
    second = await add.enqueue(3, 4)  # back to back: ids that share all but their ends
    await add.configure(job_id="report[bold]-7").enqueue(5, 6)  # printed as is, not as markup
    out = await conveyor(sqlite_url, "jobs", "list", columns=80)
    ids = [line.split()[0] for line in out.splitlines()[2:]]
    assert ids == [first.id, second.id, "report[bold]-7"]
    shown = json.loads(await conveyor(sqlite_url, "jobs", "show", ids[1]))
    assert shown["id"] == second.id

    (claimed,) = await app.backend.claim(
        slots=[QueueSlots(("default",), 1)], worker_id="w", lease_ms=60_000
    )
    error = "ValueError: " + " ".join(f"word{i}" for i in range(30))
    await app.backend.fail(
        job_id=first.id,
        token=claimed.token,
        error=error,
        traceback=None,
        retry_in_ms=None,
        retention=Retention(),
    )
    lines = (await conveyor(sqlite_url, "jobs", "list", "-s", "failed", columns=80)).splitlines()
    assert lines[2].split()[0] == first.id
    assert " ".join(" ".join(lines[3:]).split()) == error  # whole, on the lines below
    assert all(len(line) <= 80 and "…" not in line for line in lines)


async def test_info_fits_80_columns_with_whole_distinct_headers(
    app: Conveyor, sqlite_url: str
) -> None:
    add = app.tasks["add"]
    await app.enqueue_many([add.configure(queue="reports-monthly").call(1, 2) for _ in range(3)])
    await add.configure(queue="email", delay=60).enqueue(1, 2)
    await app.pause("email")
    await app.set_limits("email", rate="100/m", max_active=5)
    await app.set_limits("email", group="*", max_active=1, rate="10/s")
    worker = Worker(app, WorkerSettings(queues=["idle"]))
    running = asyncio.create_task(worker.run())

    async def seen() -> bool:
        return bool(await app.workers())

    try:
        await eventually(seen, message="for the worker's heartbeat")
        out = await conveyor(sqlite_url, "info", columns=80)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 10)
    assert "…" not in out, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    lines = [line.rstrip() for line in out.splitlines()]
    top = next(i for i, line in enumerate(lines) if line.startswith("queue "))
    headers = lines[top].split()
    assert headers == [
        "queue",
        "delay",
        "wait",
        "child",
        "active",
        "done",
        "failed",
        "cancel",
        "paused",
    ]
    assert len(set(headers)) == len(headers)
    rows = {line.split()[0]: line.split()[1:] for line in lines[top + 1 : top + 3]}
    assert rows == {
        "email": ["1", "0", "0", "0", "0", "0", "0", "yes"],
        "reports-monthly": ["0", "3", "0", "0", "0", "0", "0"],
    }
    assert "email  max 5 active, 100/m; each group max 1 active, 10/s" in out
    workers = lines.index("Workers")
    assert lines[workers + 1].split() == [
        "id",
        "queues",
        "paused",
        "slots",
        "active",
        "processed",
        "last",
        "seen",
    ]
    assert worker.id in "".join(line.split()[0] for line in lines[workers + 2 :])


async def test_manage_jobs_and_queues(app: Conveyor, sqlite_url: str) -> None:
    later = await app.tasks["add"].configure(delay=3600).enqueue(1, 2)
    assert "promoted" in await conveyor(sqlite_url, "jobs", "promote", later.id)
    assert (await app.get_job(later.id)).state == "waiting"
    assert "cancelled" in await conveyor(sqlite_url, "jobs", "cancel", later.id)
    assert (await app.get_job(later.id)).state == "cancelled"
    await conveyor(sqlite_url, "jobs", "cancel", later.id, code=1)  # already finished
    await conveyor(sqlite_url, "jobs", "retry", later.id, "--state", "completed", code=1)
    await conveyor(sqlite_url, "jobs", "retry", later.id, "--state", "active", code=2)
    assert "retried" in await conveyor(sqlite_url, "jobs", "retry", later.id)
    assert (await app.get_job(later.id)).state == "waiting"
    assert "paused default" in await conveyor(sqlite_url, "pause", "default")
    info = await conveyor(sqlite_url, "info")
    row = next(line for line in info.splitlines() if "default" in line)
    assert "yes" in row and " 1 " in row  # paused, one waiting
    assert (await app.queues())[0].paused
    assert "resumed default" in await conveyor(sqlite_url, "resume", "default")
    assert not (await app.queues())[0].paused
    assert "removed" in await conveyor(sqlite_url, "jobs", "remove", later.id)
    assert (await app.counts("default"))[JobState.WAITING] == 0


async def test_change_a_job_before_it_starts(app: Conveyor, sqlite_url: str) -> None:
    handle = await app.tasks["add"].enqueue(1, 2)
    assert "delayed" in await conveyor(sqlite_url, "jobs", "delay", handle.id, "600")
    assert (await app.get_job(handle.id)).state == "delayed"
    out = await conveyor(sqlite_url, "jobs", "priority", handle.id, "9", "--lifo")
    assert "reprioritized" in out and (await app.get_job(handle.id)).priority == 9
    app_flag = ("--app", "tests.apps:app")
    out = await conveyor(
        sqlite_url, "jobs", "update-args", handle.id, *app_flag, "--args", "[5, 6]"
    )
    assert "updated" in out and (await app.get_job(handle.id)).args == {"a": 5, "b": 6}
    before = db_digest(sqlite_url.removeprefix("sqlite:///"))
    for bad in (
        ("update-args", handle.id, *app_flag, "--args", '["x", 6]'),  # not an int
        ("update-args", handle.id, "--args", "[5, 6]"),  # no --app: no signature to check
        ("priority", handle.id, "101"),
        ("delay", handle.id, "-1"),
    ):
        assert await conveyor(sqlite_url, "jobs", *bad, code=2) == ""
    await conveyor(sqlite_url, "jobs", "delay", "nope", "1", code=1)
    assert db_digest(sqlite_url.removeprefix("sqlite:///")) == before
    assert await conveyor(sqlite_url, "jobs", "delay", handle.id, "0")  # ready now
    (claimed,) = await app.backend.claim(
        slots=[QueueSlots(("default",), 1)], worker_id="w", lease_ms=30_000
    )
    assert claimed.job.id == handle.id
    await conveyor(sqlite_url, "jobs", "priority", handle.id, "1", code=1)  # started


async def test_jobs_flow_prints_the_tree(app: Conveyor, sqlite_url: str) -> None:
    add = app.tasks["add"]
    root = await app.add_flow(flow(add.call(0, 0), [add.call(1, 1), add.call(2, 2)]))
    tree = await app.get_flow(root.id)
    out = (await conveyor(sqlite_url, "jobs", "flow", tree.children[1].job.id)).splitlines()
    assert out == [
        f"{root.id}  add  waiting_children",
        f"  {tree.children[0].job.id}  add  waiting",
        f"  {tree.children[1].job.id}  add  waiting",
    ]
    await conveyor(sqlite_url, "jobs", "flow", "nope", code=1)


async def test_drain_clean_and_obliterate_a_queue(app: Conveyor, sqlite_url: str) -> None:
    add = app.tasks["add"]
    await app.enqueue_many([add.call(n, n) for n in range(3)])
    later = await add.configure(delay=600).enqueue(1, 1)
    assert "drained 3 jobs" in await conveyor(sqlite_url, "drain", "default")
    assert (await app.get_job(later.id)).state == "delayed"
    assert "cleaned 1 jobs" in await conveyor(sqlite_url, "clean", "delayed", "-q", "default")
    await add.enqueue(2, 2)
    (_running,) = await app.backend.claim(
        slots=[QueueSlots(("default",), 1)], worker_id="w", lease_ms=30_000
    )
    await add.enqueue(3, 3)
    before = db_digest(sqlite_url.removeprefix("sqlite:///"))
    await conveyor(sqlite_url, "obliterate", "default", code=1)  # a job runs
    await conveyor(sqlite_url, "clean", "active", code=2)
    assert db_digest(sqlite_url.removeprefix("sqlite:///")) == before
    out = await conveyor(sqlite_url, "obliterate", "default", "--force")
    assert "obliterated default: 2 jobs" in out
    assert await app.queues() == []


async def test_dedup_shows_and_releases_a_key(app: Conveyor, sqlite_url: str) -> None:
    handle = await app.tasks["add"].configure(dedup_key="k1", dedup_ttl=600).enqueue(1, 2)
    assert (await conveyor(sqlite_url, "dedup", "k1")).strip() == handle.id
    out = await conveyor(sqlite_url, "dedup", "k1", "--release")
    assert out.strip() == f"released k1 (held by {handle.id})"
    assert await app.dedup_key_owner("k1") is None
    await conveyor(sqlite_url, "dedup", "k1", code=1)
    await conveyor(sqlite_url, "dedup", "", code=2)


async def test_schedules_are_added_listed_paused_and_removed(
    app: Conveyor, sqlite_url: str
) -> None:
    out = await conveyor(
        sqlite_url,
        "schedules",
        "add",
        "add",
        "--app",
        "tests.apps:app",
        "--cron",
        "0 8 * * 1",
        "--tz",
        "Europe/Paris",
        "--id",
        "monday",
        "--args",
        "[1, 2]",
    )
    assert out.strip() == "scheduled monday"
    listed = await conveyor(sqlite_url, "schedules", "list", columns=80)
    assert "monday" in listed and "0 8 * * 1" in listed and "Europe/Paris" in listed
    assert "…" not in listed
    await conveyor(sqlite_url, "schedules", "pause", "monday")
    (info,) = await app.schedules.list()
    assert (info.schedule.paused, bytes(info.schedule.payload)) == (True, b'{"a":1,"b":2}')
    await conveyor(sqlite_url, "schedules", "remove", "monday")
    assert await app.schedules.list() == []
    await conveyor(sqlite_url, "schedules", "remove", "monday", code=1)
    bounded = ("--every", "60", "--start-at", "2030-01-01T09:00Z", "--limit", "3")
    app_flag = ("--app", "tests.apps:app", "--args", "[1, 2]")
    await conveyor(sqlite_url, "schedules", "add", "add", *app_flag, *bounded)
    (info,) = await app.schedules.list()
    assert (info.schedule.limit, info.next_run_ms) == (3, 1893488400000)  # 2030-01-01 09:00Z
    listed = await conveyor(sqlite_url, "schedules", "list")
    assert "0/3" in listed and "2030-01-01 09:00" in listed
    await conveyor(sqlite_url, "schedules", "pause", "monday", code=1)


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--cron", "0 0 30 2 *"], "cron"),
        (["--cron", "0 8 * * *", "--tz", "Atlantis/Capital"], "tz"),
        (["--every", "-1"], "every"),
        ([], "cron"),
        (["--every", "60", "--limit", "0"], "limit"),
        (["--every", "60", "--end-at", "2020-01-01T00:00Z"], "end_at"),
        (["--every", "60", "--start-at", "2030-01-01T00:00"], "start_at"),  # no zone
        (["--every", "60", "--start-at", "soon"], "start-at"),
    ],
)
async def test_bad_schedules_exit_2_with_one_line_and_store_nothing(
    app: Conveyor, sqlite_url: str, argv: list[str], field: str
) -> None:
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "conveyor",
            "schedules",
            "add",
            "add",
            "--app",
            "tests.apps:app",
            "--args",
            "[1, 2]",
            *argv,
        ],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and field in proc.stderr
    assert await app.schedules.list() == []


async def test_limit_sets_and_lifts_a_queues_global_concurrency(
    app: Conveyor, sqlite_url: str
) -> None:
    await app.enqueue_many([app.tasks["add"].call(i, i) for i in range(5)])
    out = await conveyor(sqlite_url, "limit", "default", "--max-active", "2")
    assert out.strip() == "default: max 2 active"
    claimed = await app.backend.claim(
        slots=[QueueSlots(("default",), 5)], worker_id="w", lease_ms=60_000
    )
    assert len(claimed) == 2
    await conveyor(sqlite_url, "limit", "default", "--max-active", "none")
    claimed = await app.backend.claim(
        slots=[QueueSlots(("default",), 5)], worker_id="w", lease_ms=60_000
    )
    assert len(claimed) == 3


async def test_limit_sets_rates_and_group_limits(app: Conveyor, sqlite_url: str) -> None:
    out = await conveyor(sqlite_url, "limit", "email", "--rate", "100/m", "--max-active", "5")
    assert out.strip() == "email: max 5 active, 100/m"
    out = await conveyor(sqlite_url, "limit", "email", "--group", "*", "--rate", "10/s")
    assert out.strip() == "email group *: 10/s"
    out = await conveyor(sqlite_url, "limit", "email", "--group", "acme", "--max-active", "2")
    assert out.strip() == "email group acme: max 2 active"
    assert await app.limits("email") == {
        None: Limits(max_active=5, rate=Rate(100, 60_000)),
        "*": Limits(rate=Rate(10, 1000)),
        "acme": Limits(max_active=2),
    }
    info = await conveyor(sqlite_url, "info")
    assert "100/m" in info and "10/s" in info and "acme max 2" in info
    out = await conveyor(sqlite_url, "limit", "email", "--rate", "none")
    assert out.strip() == "email: max 5 active"


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["--max-active", "0"], "max-active"),
        (["--max-active", "many"], "max-active"),
        (["--rate", "fast"], "rate"),
        (["--rate", "5"], "rate"),
        (["--group", "", "--max-active", "1"], "group"),
        ([], "max-active"),
    ],
)
async def test_bad_limits_exit_2_with_one_line_and_store_nothing(
    app: Conveyor, sqlite_url: str, argv: list[str], word: str
) -> None:
    before = db_digest(sqlite_url.removeprefix("sqlite:///"))
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conveyor", "limit", "default", *argv],
        cwd=ROOT,
        env={**os.environ, "CONVEYOR_URL": sqlite_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2 and word in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert db_digest(sqlite_url.removeprefix("sqlite:///")) == before


async def test_an_explicit_url_wins_over_conveyor_url(
    app: Conveyor, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--url B` with CONVEYOR_URL=A acts on B and leaves A untouched; so
    does `Conveyor(B)`; the environment fills in only for `Conveyor()`."""
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    here = await app.tasks["add"].enqueue(1, 1)
    async with apps.build(other_url) as other:
        there = await other.tasks["add"].enqueue(2, 2)
    before = db_digest(sqlite_url.removeprefix("sqlite:///"))
    out = await conveyor(sqlite_url, "jobs", "remove", there.id, "--url", other_url)
    assert "removed" in out
    assert db_digest(sqlite_url.removeprefix("sqlite:///")) == before
    await conveyor(sqlite_url, "jobs", "show", here.id)  # the environment's, with no --url
    monkeypatch.setenv("CONVEYOR_URL", sqlite_url)
    assert Conveyor(other_url).url == other_url
    assert Conveyor().url == sqlite_url
