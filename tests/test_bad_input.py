"""Bad input gets an error naming the field, and the store is left exactly as it was."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from conveyor import (
    Conveyor,
    InvalidArguments,
    InvalidInput,
    PayloadTooLarge,
    Retention,
    Retry,
    UnknownTask,
    WorkerSettings,
    flow,
)
from conveyor.task import Task

from .conftest import store_digest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Point:
    x: int
    y: int


class Address(pydantic.BaseModel):
    street: str
    number: int


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Conveyor]:
    app = Conveyor(store_url, max_payload_bytes=512 * 1024)

    @app.task(queue="work")
    async def job(n: int, point: Point | None = None, address: Address | None = None) -> None: ...

    @app.task(queue="work")
    async def note(address: Address, text: str = "", data: object = None) -> None: ...

    async with app:
        await job.enqueue(1)  # the store is not empty: nothing may change in it
        yield app


def job_task(app: Conveyor) -> Task[Any, Any]:
    return app.tasks["job"]


def note(app: Conveyor, **kwargs: Any) -> Awaitable[object]:
    return app.tasks["note"].enqueue(Address(street="Main", number=1), **kwargs)


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


NAN, INF = float("nan"), float("inf")


async def on_job(app: Conveyor, change: Callable[[str], Awaitable[object]]) -> object:
    """``change`` applied to the waiting job the fixture made."""
    (job,) = await app.list_jobs("waiting", queue="work")
    return await change(job.id)


PAST = datetime(2020, 1, 1, tzinfo=UTC)
BIG = 2**63


LONG = "x" * 129
CASES: list[tuple[str, type[Exception], str, Callable[[Conveyor], Awaitable[object]]]] = [
    ("negative delay", InvalidInput, "delay", lambda a: job_task(a).configure(delay=-1).enqueue(1)),
    (
        "priority too high",
        InvalidInput,
        "priority",
        lambda a: job_task(a).configure(priority=101).enqueue(1),
    ),
    (
        "priority not int",
        InvalidInput,
        "priority",
        lambda a: job_task(a).configure(priority="1").enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "retries below zero",
        InvalidInput,
        "retries",
        lambda a: job_task(a).configure(retries=-1).enqueue(1),
    ),
    (
        "zero timeout",
        InvalidInput,
        "timeout",
        lambda a: job_task(a).configure(timeout=0).enqueue(1),
    ),
    ("zero ttl", InvalidInput, "ttl", lambda a: job_task(a).configure(ttl=0).enqueue(1)),
    (
        "ttl not longer than the delay",
        InvalidInput,
        "ttl",
        lambda a: job_task(a).configure(delay=60, ttl=60).enqueue(1),
    ),
    (
        "naive run_at",
        InvalidInput,
        "run_at",
        lambda a: job_task(a).configure(run_at=datetime(2030, 1, 1)).enqueue(1),
    ),
    (
        "queue with control char",
        InvalidInput,
        "queue",
        lambda a: job_task(a).configure(queue="mail\n").enqueue(1),
    ),
    (
        "queue over 128 bytes",
        InvalidInput,
        "queue",
        lambda a: job_task(a).configure(queue=LONG).enqueue(1),
    ),
    (
        "queue of multibyte chars over 128 bytes",
        InvalidInput,
        "queue",
        lambda a: job_task(a).configure(queue="é" * 65).enqueue(1),
    ),
    (
        "job id with control char",
        InvalidInput,
        "job_id",
        lambda a: job_task(a).configure(job_id="a\x00b").enqueue(1),
    ),
    (
        "job id over 128 bytes",
        InvalidInput,
        "job_id",
        lambda a: job_task(a).configure(job_id=LONG).enqueue(1),
    ),
    ("empty job id", InvalidInput, "job_id", lambda a: job_task(a).configure(job_id="").enqueue(1)),
    (
        "change to a negative delay",
        InvalidInput,
        "delay",
        lambda a: on_job(a, lambda j: a.change_delay(j, -1)),
    ),
    (
        "change to a past run_at",
        InvalidInput,
        "run_at",
        lambda a: on_job(a, lambda j: a.change_delay(j, run_at=PAST)),
    ),
    ("change_delay of neither", InvalidInput, "delay", lambda a: on_job(a, a.change_delay)),
    (
        "change to priority 101",
        InvalidInput,
        "priority",
        lambda a: on_job(a, lambda j: a.change_priority(j, 101)),
    ),
    (
        "change lifo not bool",
        InvalidInput,
        "lifo",
        lambda a: on_job(a, lambda j: a.change_priority(j, 1, lifo=1)),
    ),  # type: ignore[arg-type]
    (
        "update_args wrong type",
        InvalidArguments,
        "n",
        lambda a: on_job(a, lambda j: a.update_args(j, "one")),
    ),
    (
        "update_args unknown keyword",
        InvalidArguments,
        "m",
        lambda a: on_job(a, lambda j: a.update_args(j, 1, m=2)),
    ),
    ("change an empty job id", InvalidInput, "job_id", lambda a: a.change_priority("", 1)),
    ("drain an empty queue name", InvalidInput, "queue", lambda a: a.drain("")),
    (
        "schedule limit of 0",
        InvalidInput,
        "limit",
        lambda a: a.schedules.add(job_task(a), every=60, args=[1], limit=0),
    ),
    (
        "schedule end in the past",
        InvalidInput,
        "end_at",
        lambda a: a.schedules.add(job_task(a), every=60, args=[1], end_at=PAST),
    ),
    (
        "keep_completed not a Retention",
        InvalidInput,
        "keep_completed",
        lambda a: job_task(a).configure(keep_completed=5).enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "keep_failed not a Retention",
        InvalidInput,
        "keep_failed",
        lambda a: job_task(a).configure(keep_failed="all").enqueue(1),
    ),  # type: ignore[arg-type]
    ("drain delayed not bool", InvalidInput, "delayed", lambda a: a.drain("work", delayed=1)),  # type: ignore[arg-type]
    (
        "obliterate force not bool",
        InvalidInput,
        "force",
        lambda a: a.obliterate("work", force="yes"),
    ),  # type: ignore[arg-type]
    ("clean active jobs", InvalidInput, "state", lambda a: a.clean("active")),
    (
        "retry to waiting",
        InvalidInput,
        "state",
        lambda a: on_job(a, lambda j: a.retry(j, state="waiting")),
    ),
    ("missing argument", InvalidArguments, "n", lambda a: job_task(a).enqueue()),
    ("unknown keyword", InvalidArguments, "m", lambda a: job_task(a).enqueue(1, m=2)),
    ("too many positional", InvalidArguments, "args", lambda a: job_task(a).enqueue(1, 2, 3, 4)),
    ("wrong type", InvalidArguments, "n", lambda a: job_task(a).enqueue("one")),
    ("bool is not int", InvalidArguments, "n", lambda a: job_task(a).enqueue(True)),
    (
        "wrong dataclass field",
        InvalidArguments,
        "point",
        lambda a: job_task(a).enqueue(1, point={"x": 1, "y": "two"}),
    ),
    (
        "wrong pydantic field",
        InvalidArguments,
        "address",
        lambda a: job_task(a).enqueue(1, address={"street": "Main", "number": "x"}),
    ),
    (
        "not JSON-serializable",
        InvalidArguments,
        "point",
        lambda a: job_task(a).enqueue(1, point=object()),
    ),
    (
        "payload over 512 KiB",
        PayloadTooLarge,
        "args",
        lambda a: (
            job_task(a)
            .configure(job_id="big")
            .enqueue(1, address=Address(street="x" * (513 * 1024), number=1))
        ),
    ),
    ("unknown task", UnknownTask, "task", lambda a: _async(a.get_task, "nope")),
    ("unknown state", InvalidInput, "state", lambda a: a.list_jobs("sleeping")),
    ("bad job id to cancel", InvalidInput, "job_id", lambda a: a.cancel("x\ty")),
    ("bad queue to pause", InvalidInput, "queue", lambda a: a.pause("")),
    (
        "negative clean age",
        InvalidInput,
        "older_than",
        lambda a: a.clean("completed", older_than=-5),
    ),
    (
        "delay over ten years",
        InvalidInput,
        "delay",
        lambda a: job_task(a).configure(delay=1e12).enqueue(1),
    ),
    (
        "infinite delay",
        InvalidInput,
        "delay",
        lambda a: job_task(a).configure(delay=float("inf")).enqueue(1),
    ),
    (
        "empty dedup key",
        InvalidInput,
        "dedup_key",
        lambda a: job_task(a).configure(dedup_key="", dedup_ttl=60).enqueue(1),
    ),
    (
        "dedup key over 128 bytes",
        InvalidInput,
        "dedup_key",
        lambda a: job_task(a).configure(dedup_key=LONG, debounce=5).enqueue(1),
    ),
    (
        "dedup key without a mode",
        InvalidInput,
        "dedup_key",
        lambda a: job_task(a).configure(dedup_key="k").enqueue(1),
    ),
    (
        "dedup key with both modes",
        InvalidInput,
        "dedup_key",
        lambda a: job_task(a).configure(dedup_key="k", dedup_ttl=60, debounce=5).enqueue(1),
    ),
    (
        "dedup ttl without a key",
        InvalidInput,
        "dedup_ttl",
        lambda a: job_task(a).configure(dedup_ttl=60).enqueue(1),
    ),
    (
        "debounce without a key",
        InvalidInput,
        "debounce",
        lambda a: job_task(a).configure(debounce=5).enqueue(1),
    ),
    (
        "zero dedup ttl",
        InvalidInput,
        "dedup_ttl",
        lambda a: job_task(a).configure(dedup_key="k", dedup_ttl=0).enqueue(1),
    ),
    (
        "negative debounce",
        InvalidInput,
        "debounce",
        lambda a: job_task(a).configure(dedup_key="k", debounce=-1).enqueue(1),
    ),
    (
        "debounce with a delay",
        InvalidInput,
        "debounce",
        lambda a: job_task(a).configure(dedup_key="k", debounce=5, delay=1).enqueue(1),
    ),
    (
        "debounce with run_at",
        InvalidInput,
        "debounce",
        lambda a: (
            job_task(a)
            .configure(dedup_key="k", debounce=5, run_at=datetime(2030, 1, 1, tzinfo=UTC))
            .enqueue(1)
        ),
    ),
    (
        "reserved group",
        InvalidInput,
        "group",
        lambda a: job_task(a).configure(group="*").enqueue(1),
    ),
    (
        "group with control char",
        InvalidInput,
        "group",
        lambda a: job_task(a).configure(group="a\nb").enqueue(1),
    ),
    ("bad rate", InvalidInput, "rate", lambda a: a.set_limits("work", rate="lots/s")),
    ("zero max active", InvalidInput, "max_active", lambda a: a.set_limits("work", max_active=0)),
    (
        "flow parent with a delay",
        InvalidInput,
        "delay",
        lambda a: a.add_flow(
            flow(job_task(a).configure(delay=5).call(1), children=[job_task(a).call(2)])
        ),
    ),
    (
        "flow without children",
        InvalidInput,
        "children",
        lambda a: a.add_flow(flow(job_task(a).call(1))),
    ),
    (
        "flow child with a dedup key",
        InvalidInput,
        "dedup_key",
        lambda a: a.add_flow(
            flow(
                job_task(a).call(1),
                children=[job_task(a).configure(dedup_key="k", dedup_ttl=5).call(2)],
            )
        ),
    ),
    ("not a flow", InvalidInput, "flow", lambda a: a.add_flow(job_task(a).call(1))),
    (
        "piped step with two before it",
        InvalidInput,
        "pipe",
        lambda a: a.add_flow(
            flow(job_task(a).pipe(), children=[job_task(a).call(1), job_task(a).call(2)])
        ),
    ),
    # What JSON would silently turn into something else.
    ("NaN argument", InvalidArguments, "data", lambda a: note(a, data=NAN)),
    ("infinite argument", InvalidArguments, "data", lambda a: note(a, data=INF)),
    ("negative infinity", InvalidArguments, "data", lambda a: note(a, data=-INF)),
    ("NaN inside a list", InvalidArguments, "data", lambda a: note(a, data=[1.0, NAN])),
    ("infinity inside a dict", InvalidArguments, "data", lambda a: note(a, data={"k": {"v": INF}})),
    ("NaN for a float", InvalidArguments, "n", lambda a: job_task(a).enqueue(NAN)),
    ("bytes for a str", InvalidArguments, "text", lambda a: note(a, text=b"hi")),
    ("bytearray for a str", InvalidArguments, "text", lambda a: note(a, text=bytearray(b"hi"))),
    (
        "None for a required pydantic model",
        InvalidArguments,
        "address",
        lambda a: a.tasks["note"].enqueue(None),
    ),
    (
        "extra dataclass field",
        InvalidArguments,
        "point",
        lambda a: job_task(a).enqueue(1, point={"x": 1, "y": 2, "z": 3}),
    ),
    (
        "nested past the encoder's depth",
        InvalidArguments,
        "data",
        lambda a: note(a, data=deep(5000)),
    ),
    # Ids and names that cannot be stored.
    (
        "lone surrogate in a job id",
        InvalidInput,
        "job_id",
        lambda a: job_task(a).configure(job_id="a\ud800").enqueue(1),
    ),
    (
        "lone surrogate in a queue",
        InvalidInput,
        "queue",
        lambda a: job_task(a).configure(queue="q\udfff").enqueue(1),
    ),
    (
        "lone surrogate in a group",
        InvalidInput,
        "group",
        lambda a: job_task(a).configure(group="g\ud800").enqueue(1),
    ),
    (
        "lone surrogate in a dedup key",
        InvalidInput,
        "dedup_key",
        lambda a: job_task(a).configure(dedup_key="k\ud800", dedup_ttl=5).enqueue(1),
    ),
    ("lone surrogate in a queue to pause", InvalidInput, "queue", lambda a: a.pause("\ud800")),
    # Numbers a store cannot hold.
    ("limit past 64 bits", InvalidInput, "limit", lambda a: a.list_jobs("waiting", limit=BIG)),
    ("offset past 64 bits", InvalidInput, "offset", lambda a: a.list_jobs("waiting", offset=BIG)),
    (
        "max active past 64 bits",
        InvalidInput,
        "max_active",
        lambda a: a.set_limits("work", max_active=BIG),
    ),
    (
        "run_at in the year 9999",
        InvalidInput,
        "run_at",
        lambda a: job_task(a).configure(run_at=datetime(9999, 1, 1, tzinfo=UTC)).enqueue(1),
    ),
    (
        "rate with non-ASCII digits",
        InvalidInput,
        "rate",
        lambda a: a.set_limits("work", rate="\u0665/s"),
    ),  # ARABIC-INDIC DIGIT FIVE
    (
        "rate window with non-ASCII digits",
        InvalidInput,
        "rate",
        lambda a: a.set_limits("work", rate="5/\u0663s"),
    ),
    # Arguments of the wrong kind.
    (
        "schedule tz not a string",
        InvalidInput,
        "tz",
        lambda a: a.schedules.add("job", every=60, tz=5, args=[1]),
    ),  # type: ignore[arg-type]
    (
        "schedule args not a list",
        InvalidInput,
        "args",
        lambda a: a.schedules.add("job", every=60, args=5),
    ),  # type: ignore[arg-type]
    (
        "schedule args a string",
        InvalidInput,
        "args",
        lambda a: a.schedules.add("job", every=60, args="1"),
    ),
    (
        "schedule kwargs not a mapping",
        InvalidInput,
        "kwargs",
        lambda a: a.schedules.add("job", every=60, kwargs=[1]),
    ),  # type: ignore[arg-type]
    ("enqueue_many of ints", InvalidInput, "jobs", lambda a: a.enqueue_many([1, 2])),  # type: ignore[list-item]
    ("enqueue_many of None", InvalidInput, "jobs", lambda a: a.enqueue_many(None)),  # type: ignore[arg-type]
    ("enqueue_many of a string", InvalidInput, "jobs", lambda a: a.enqueue_many("ab")),  # type: ignore[arg-type]
    (
        "enqueue_many with one bad item",
        InvalidInput,
        "jobs",
        lambda a: a.enqueue_many([job_task(a).call(1), "x"]),
    ),  # type: ignore[list-item]
    ("workers seen within NaN", InvalidInput, "seen_within", lambda a: a.workers(seen_within=NAN)),
    (
        "workers seen within infinity",
        InvalidInput,
        "seen_within",
        lambda a: a.workers(seen_within=INF),
    ),
    (
        "workers seen within a negative time",
        InvalidInput,
        "seen_within",
        lambda a: a.workers(seen_within=-1),
    ),
    # Options of the wrong kind or range.
    (
        "priority a float",
        InvalidInput,
        "priority",
        lambda a: job_task(a).configure(priority=1.5).enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "priority a bool",
        InvalidInput,
        "priority",
        lambda a: job_task(a).configure(priority=True).enqueue(1),
    ),
    (
        "priority too low",
        InvalidInput,
        "priority",
        lambda a: job_task(a).configure(priority=-101).enqueue(1),
    ),
    (
        "retries a bool",
        InvalidInput,
        "retries",
        lambda a: job_task(a).configure(retries=True).enqueue(1),
    ),
    (
        "retries past the cap",
        InvalidInput,
        "retries",
        lambda a: job_task(a).configure(retries=10**6).enqueue(1),
    ),
    (
        "negative timeout",
        InvalidInput,
        "timeout",
        lambda a: job_task(a).configure(timeout=-1).enqueue(1),
    ),
    (
        "NaN timeout",
        InvalidInput,
        "timeout",
        lambda a: job_task(a).configure(timeout=NAN).enqueue(1),
    ),
    (
        "timeout over ten years",
        InvalidInput,
        "timeout",
        lambda a: job_task(a).configure(timeout=1e10).enqueue(1),
    ),
    ("NaN ttl", InvalidInput, "ttl", lambda a: job_task(a).configure(ttl=NAN).enqueue(1)),
    ("NaN delay", InvalidInput, "delay", lambda a: job_task(a).configure(delay=NAN).enqueue(1)),
    (
        "delay a string",
        InvalidInput,
        "delay",
        lambda a: job_task(a).configure(delay="5").enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "negative timedelta delay",
        InvalidInput,
        "delay",
        lambda a: job_task(a).configure(delay=timedelta(seconds=-1)).enqueue(1),
    ),
    (
        "run_at a string",
        InvalidInput,
        "run_at",
        lambda a: job_task(a).configure(run_at="2030-01-01").enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "queue not a string",
        InvalidInput,
        "queue",
        lambda a: job_task(a).configure(queue=5).enqueue(1),
    ),  # type: ignore[arg-type]
    ("empty queue", InvalidInput, "queue", lambda a: job_task(a).configure(queue="").enqueue(1)),
    ("empty group", InvalidInput, "group", lambda a: job_task(a).configure(group="").enqueue(1)),
    (
        "group over 128 bytes",
        InvalidInput,
        "group",
        lambda a: job_task(a).configure(group=LONG).enqueue(1),
    ),
    (
        "job id not a string",
        InvalidInput,
        "job_id",
        lambda a: job_task(a).configure(job_id=7).enqueue(1),
    ),  # type: ignore[arg-type]
    (
        "NaN dedup ttl",
        InvalidInput,
        "dedup_ttl",
        lambda a: job_task(a).configure(dedup_key="k", dedup_ttl=NAN).enqueue(1),
    ),
    # Reads and management with bad arguments.
    ("zero limit", InvalidInput, "limit", lambda a: a.list_jobs("waiting", limit=0)),
    ("negative offset", InvalidInput, "offset", lambda a: a.list_jobs("waiting", offset=-1)),
    ("limit a bool", InvalidInput, "limit", lambda a: a.list_jobs("waiting", limit=True)),
    ("empty job id to read", InvalidInput, "job_id", lambda a: a.get_job("")),
    ("job id over 128 bytes to read", InvalidInput, "job_id", lambda a: a.get_job(LONG)),
    (
        "negative max active",
        InvalidInput,
        "max_active",
        lambda a: a.set_limits("work", max_active=-1),
    ),
    (
        "max active a bool",
        InvalidInput,
        "max_active",
        lambda a: a.set_limits("work", max_active=True),
    ),
    ("rate of zero jobs", InvalidInput, "rate", lambda a: a.set_limits("work", rate="0/s")),
    ("rate over a zero window", InvalidInput, "rate", lambda a: a.set_limits("work", rate="5/0s")),
    ("rate past the cap", InvalidInput, "rate", lambda a: a.set_limits("work", rate="2000000/s")),
    (
        "rate of an unknown unit",
        InvalidInput,
        "rate",
        lambda a: a.set_limits("work", rate="5/fortnight"),
    ),
    # Schedules.
    (
        "schedule every zero",
        InvalidInput,
        "every",
        lambda a: a.schedules.add("job", every=0, args=[1]),
    ),
    (
        "schedule every NaN",
        InvalidInput,
        "every",
        lambda a: a.schedules.add("job", every=NAN, args=[1]),
    ),
    (
        "schedule bad cron",
        InvalidInput,
        "cron",
        lambda a: a.schedules.add("job", cron="bad", args=[1]),
    ),
    (
        "schedule unknown zone",
        InvalidInput,
        "tz",
        lambda a: a.schedules.add("job", cron="0 * * * *", tz="Mars/Base", args=[1]),
    ),
    (
        "schedule of an unknown task",
        UnknownTask,
        "task",
        lambda a: a.schedules.add("nope", every=60),
    ),
    (
        "schedule with both cron and every",
        InvalidInput,
        "cron",
        lambda a: a.schedules.add("job", cron="0 * * * *", every=60, args=[1]),
    ),
    (
        "schedule args of the wrong type",
        InvalidArguments,
        "n",
        lambda a: a.schedules.add("job", every=60, args=["one"]),
    ),
]


async def _async(fn: Callable[..., object], *args: object) -> object:
    return fn(*args)


@pytest.mark.parametrize(
    ("error", "field", "action"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_bad_input_is_rejected_and_changes_nothing(
    app: Conveyor,
    error: type[Exception],
    field: str,
    action: Callable[[Conveyor], Awaitable[object]],
) -> None:
    before = store_digest(app.url)
    with pytest.raises(error) as caught:
        await action(app)
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert store_digest(app.url) == before


async def test_valid_dataclass_and_pydantic_arguments_round_trip(app: Conveyor) -> None:
    handle = await job_task(app).enqueue(
        2, point=Point(1, 2), address=Address(street="Main", number=5)
    )
    job = await app.get_job(handle.id)
    assert job.args == {
        "n": 2,
        "point": {"x": 1, "y": 2},
        "address": {"street": "Main", "number": 5},
    }
    _, kwargs = job_task(app).signature.decode(
        b'{"n": 2, "point": {"x": 1, "y": 2}, "address": {"street": "Main", "number": 5}}'
    )
    assert kwargs["point"] == Point(1, 2)
    assert kwargs["address"] == Address(street="Main", number=5)


BAD_DEFINITIONS: list[tuple[str, str, Callable[[Conveyor], object]]] = [
    ("retries below zero", "retries", lambda a: a.task(retries=-1)(lambda: None)),
    ("backoff not a policy", "backoff", lambda a: a.task(backoff=5)(lambda: None)),  # type: ignore[call-overload]
    (
        "retention not a policy",
        "keep_completed",
        lambda a: a.task(keep_completed=100)(lambda: None),
    ),  # type: ignore[call-overload]
    ("negative backoff", "backoff", lambda a: Retry.exponential(-1)),
    ("infinite backoff cap", "backoff", lambda a: Retry.exponential(1, cap=float("inf"))),
    ("backoff factor below 1", "backoff", lambda a: Retry.exponential(1, factor=0.5)),
    ("retry with infinite delay", "delay", lambda a: Retry(delay=float("inf"))),
    ("negative retention count", "max_count", lambda a: Retention(max_count=-1)),
    ("float retention count", "max_count", lambda a: Retention(max_count=1e3)),  # type: ignore[arg-type]
    ("negative retention age", "max_age_s", lambda a: Retention(max_age_s=-1)),
    ("zero concurrency", "concurrency", lambda a: WorkerSettings(concurrency=0)),
    ("queues as one string", "queues", lambda a: WorkerSettings(queues="email")),  # type: ignore[arg-type]
    ("empty queues", "queues", lambda a: WorkerSettings(queues=())),
    ("queue named twice", "queues", lambda a: WorkerSettings(queues=("a", "a"))),
    (
        "count for a queue not taken",
        "queue_concurrency",
        lambda a: WorkerSettings(queues=("a",), queue_concurrency={"b": 2}),
    ),
    (
        "zero slots for a queue",
        "queue_concurrency",
        lambda a: WorkerSettings(queues=("a",), queue_concurrency={"a": 0}),
    ),
    ("empty task name", "name", lambda a: a.task(name="")(lambda: None)),
    ("task name with a control char", "name", lambda a: a.task(name="a\nb")(lambda: None)),
    ("task name with a lone surrogate", "name", lambda a: a.task(name="\ud800")(lambda: None)),
]


@pytest.mark.parametrize(
    ("field", "define"), [c[1:] for c in BAD_DEFINITIONS], ids=[c[0] for c in BAD_DEFINITIONS]
)
def test_bad_definitions_are_rejected(
    sqlite_url: str, field: str, define: Callable[[Conveyor], object]
) -> None:
    app = Conveyor(sqlite_url)
    with pytest.raises(InvalidInput) as caught:
        define(app)
    assert caught.value.field == field
    assert app.tasks == {}


CLI_CASES = [
    ("unknown task", ["enqueue", "nope", "--app", "tests.apps:app"]),
    ("args not JSON", ["enqueue", "add", "--app", "tests.apps:app", "--args", "[1,"]),
    ("args not a list", ["enqueue", "add", "--app", "tests.apps:app", "--args", "{}"]),
    ("wrong type", ["enqueue", "add", "--app", "tests.apps:app", "--args", '["a", 1]']),
    (
        "priority out of range",
        ["enqueue", "add", "--app", "tests.apps:app", "--args", "[1, 2]", "--priority", "500"],
    ),
    (
        "negative delay",
        ["enqueue", "add", "--app", "tests.apps:app", "--args", "[1, 2]", "--delay", "-3"],
    ),
    (
        "job id with control char",
        ["enqueue", "add", "--app", "tests.apps:app", "--args", "[1, 2]", "--job-id", "a\x01"],
    ),
    ("app not importable", ["enqueue", "add", "--app", "no_such_module:app"]),
    ("app without colon", ["worker", "tests.apps"]),
    ("zero concurrency", ["worker", "tests.apps:app", "--concurrency", "0"]),
    ("bad queue name", ["worker", "tests.apps:app", "--queues", "x" * 200]),
    ("zero slots for a queue", ["worker", "tests.apps:app", "--queues", "email:0,pdf:2"]),
    ("queue named twice", ["worker", "tests.apps:app", "--queues", "email:1,email"]),
    ("unknown command", ["frobnicate"]),
    ("unknown state", ["jobs", "list", "--state", "sleeping"]),
    ("unknown log level", ["worker", "tests.apps:app", "--log-level", "LOUD"]),
    ("unknown log format", ["worker", "tests.apps:app", "--log-format", "xml"]),
    ("URL of an unknown scheme", ["info", "--url", "ftp://x"]),
    ("in-memory SQLite", ["info", "--url", "sqlite:///:memory:"]),
    ("bad synchronous setting", ["info", "--url", "sqlite:///x.db?synchronous=bogus"]),
    ("port out of range", ["info", "--url", "redis://127.0.0.1:99999/0"]),
    ("port not a number", ["info", "--url", "redis://127.0.0.1:abc/0"]),
    ("empty namespace", ["info", "--url", "redis://127.0.0.1:6379/0?namespace="]),
    ("namespace with a brace", ["info", "--url", "redis://127.0.0.1:6379/0?namespace=a{b"]),
    (
        "args nested past the decoder's depth",
        ["enqueue", "add", "--app", "tests.apps:app", "--args", "[" * 5000 + "]" * 5000],
    ),
    ("limit past 64 bits", ["jobs", "list", "--limit", str(2**70)]),
    ("offset past 64 bits", ["jobs", "list", "--offset", str(2**70)]),
    ("max active past 64 bits", ["limit", "work", "--max-active", str(2**70)]),
    (
        "NaN delay",
        ["enqueue", "add", "--app", "tests.apps:app", "--args", "[1, 2]", "--delay", "nan"],
    ),
    ("NaN in args", ["enqueue", "add", "--app", "tests.apps:app", "--args", "[NaN, 2]"]),
]


@pytest.mark.parametrize("argv", [c[1] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
async def test_cli_bad_arguments_exit_2_with_one_line(
    app: Conveyor, store_url: str, argv: list[str]
) -> None:
    before = store_digest(store_url)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conveyor", *argv],
        cwd=ROOT,
        env={"CONVEYOR_URL": store_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("conveyor: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert store_digest(store_url) == before


def test_generated_job_ids_are_unique_and_time_ordered_across_forks() -> None:
    import os
    import warnings

    from conveyor.task import new_job_id

    read, write = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns when forking a process with threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: report one id and leave without running pytest's teardown
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    ours = [new_job_id() for _ in range(1000)]
    assert len(set(ours)) == 1000 and child_id not in ours
    assert child_id[12:24] != ours[0][12:24]  # a fork draws its own process prefix
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ours)
    assert [i[:12] for i in ours] == sorted(i[:12] for i in ours)  # milliseconds first


BROKEN_MODULES = [
    ("raises at import", "raise RuntimeError('no config')\n"),
    ("syntax error", "def broken(:\n"),
    ("exits at import", "import sys\nsys.exit(3)\n"),
]


@pytest.mark.parametrize(
    "source", [c[1] for c in BROKEN_MODULES], ids=[c[0] for c in BROKEN_MODULES]
)
async def test_an_app_module_that_fails_to_import_exits_2_with_one_line(
    app: Conveyor, store_url: str, tmp_path: Path, source: str
) -> None:
    (tmp_path / "broken_app.py").write_text(source)
    before = store_digest(store_url)
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conveyor", "enqueue", "add", "--app", "broken_app:app"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"CONVEYOR_URL": store_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "broken_app" in lines[0], proc.stderr
    assert store_digest(store_url) == before
