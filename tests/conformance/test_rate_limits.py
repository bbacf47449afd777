"""Rate limits of queues and groups, and holds set by jobs that were rate
limited (``RateLimited``): sliding windows on the store's clock, decided by
the claim, never spending an attempt."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, InvalidInput, JobState, Limits, Rate, RateLimited, Retention

from ..conftest import StartWorker, eventually
from .conftest import claim, count_claims


async def _jobs(app: Conveyor, n: int, *, group: str | None = None, queue: str = "default") -> None:
    task = app.tasks.get("work")
    if task is None:

        @app.task
        async def work(n: int) -> None: ...

        task = work
    await app.enqueue_many([task.configure(group=group, queue=queue).call(i) for i in range(n)])


async def test_a_rate_limit_holds_claims_to_its_window(app: Conveyor) -> None:
    await _jobs(app, 10)
    await app.set_limits("default", rate="3/s")
    assert len(await claim(app, limit=10)) == 3
    assert await claim(app, limit=10) == []
    waiting = await app.list_jobs("waiting")
    assert len(waiting) == 7 and all(job.attempts == 0 for job in waiting)  # no attempt spent
    app.clock.advance(1.0)  # the window is 1 s and a margin of 25 ms (limits.window_ms)
    assert await claim(app, limit=10) == []
    app.clock.advance(0.03)
    assert len(await claim(app, limit=10)) == 3


async def test_the_window_slides_instead_of_resetting(app: Conveyor) -> None:
    await _jobs(app, 10)
    await app.set_limits("default", rate="2/s")
    assert len(await claim(app, limit=1)) == 1  # t = 0
    app.clock.advance(0.6)
    assert len(await claim(app, limit=5)) == 1  # t = 0.6: two in the last second
    app.clock.advance(0.5)  # t = 1.1: the first start left the window, the second has not
    assert len(await claim(app, limit=5)) == 1
    assert await claim(app, limit=5) == []
    app.clock.advance(0.6)  # t = 1.7: the start at 0.6 left too (window: 1.025 s)
    assert len(await claim(app, limit=5)) == 1


async def test_a_group_rate_limit_holds_only_that_group(app: Conveyor) -> None:
    await _jobs(app, 5, group="a")
    await _jobs(app, 5, group="b")
    await app.set_limits("default", group="a", rate="1/m")
    claimed = await claim(app, limit=10)
    assert sorted(c.job.group or "" for c in claimed) == ["a"] + ["b"] * 5
    assert await claim(app, limit=10) == []
    app.clock.advance(60.03)
    (next_a,) = await claim(app, limit=10)
    assert next_a.job.group == "a"


async def test_groups_by_default_and_one_groups_own_limit(app: Conveyor) -> None:
    await _jobs(app, 4, group="a")
    await _jobs(app, 4, group="b")
    await app.set_limits("default", group="*", max_active=1)
    await app.set_limits("default", group="b", max_active=3)
    claimed = await claim(app, limit=10)
    assert sorted(c.job.group or "" for c in claimed) == ["a", "b", "b", "b"]
    assert await claim(app, limit=10) == []
    first_a = next(c for c in claimed if c.job.group == "a")
    assert await app.backend.complete(
        job_id=first_a.job.id, token=first_a.token, result=b"null", retention=Retention()
    )
    (again,) = await claim(app, limit=10)  # a's slot is free again
    assert again.job.group == "a"
    assert await app.limits("default") == {
        "*": Limits(max_active=1),
        "b": Limits(max_active=3),
    }
    await app.set_limits("default", group="b", max_active=None)  # b falls back to the default
    assert "b" not in await app.limits("default")


def test_rates_parse_and_keep_a_margin_for_start_delays() -> None:
    assert Rate.parse("100/m") == Rate(100, 60_000)
    assert Rate.parse(" 10 / 5s ") == Rate(10, 5_000)
    assert Rate.parse("1000/15min") == Rate(1000, 900_000)
    assert Rate.parse("3/250ms") == Rate(3, 250)
    assert str(Rate(100, 60_000)) == "100/m" and str(Rate(10, 5_000)) == "10/5s"
    assert Rate(50, 1000).window_ms == 1025  # 2.5 %, at most 25 ms
    assert Rate(5, 200).window_ms == 205
    assert Rate(100, 60_000).window_ms == 60_025


async def test_limits_are_read_back_and_lifted(app: Conveyor) -> None:
    await app.set_limits("email", rate="100/m", max_active=5)
    await app.set_limits("email", group="*", rate="10/s")
    assert await app.limits("email") == {
        None: Limits(max_active=5, rate=Rate(100, 60_000)),
        "*": Limits(rate=Rate(10, 1000)),
    }
    await app.set_limits("email", max_active=None)  # the rate stays
    assert (await app.limits("email"))[None] == Limits(rate=Rate(100, 60_000))
    await app.set_limits("email", rate=None, group="*")
    assert "*" not in await app.limits("email")


async def test_a_released_job_can_hold_its_queue_or_its_group(app: Conveyor) -> None:
    await _jobs(app, 2, group="a")
    await _jobs(app, 2, group="b")
    first = (await claim(app, limit=1))[0]
    assert first.job.group == "a"
    assert await app.backend.release(
        job_id=first.job.id, token=first.token, block_ms=5_000, block_group=True
    )
    job = await app.get_job(first.job.id)
    assert job.state == JobState.WAITING and job.attempts == 0
    claimed = await claim(app, limit=10)
    assert [c.job.group for c in claimed] == ["b", "b"]  # a is held
    app.clock.advance(5.1)
    assert sorted(c.job.group or "" for c in await claim(app, limit=10)) == ["a", "a"]
    # Holding the queue holds every group of it.
    await _jobs(app, 2, group="c")
    held = (await claim(app, limit=1))[0]
    assert await app.backend.release(job_id=held.job.id, token=held.token, block_ms=5_000)
    assert await claim(app, limit=10) == []
    app.clock.advance(5.1)
    assert len(await claim(app, limit=10)) == 2
    assert await app.limits("default") == {}  # a hold is not a limit


async def test_a_stale_release_holds_nothing(app: Conveyor) -> None:
    await _jobs(app, 2)
    first = (await claim(app, limit=1))[0]
    assert not await app.backend.release(job_id=first.job.id, token="stale", block_ms=60_000)
    assert len(await claim(app, limit=10)) == 1  # the queue is not held


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"rate": "abc"}, "rate"),
        ({"rate": "0/s"}, "rate"),
        ({"rate": "5/0.0001s"}, "rate"),
        ({"rate": 5}, "rate"),
        ({"max_active": 0}, "max_active"),
        ({"group": "", "max_active": 1}, "group"),
    ],
)
async def test_bad_limits_are_refused_and_change_nothing(
    app: Conveyor, changes: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await app.set_limits("default", **changes)  # type: ignore[arg-type]
    assert refused.value.field == field
    assert await app.limits("default") == {}


async def test_a_job_cannot_join_the_reserved_group(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    with pytest.raises(InvalidInput) as refused:
        work.configure(group="*")
    assert refused.value.field == "group"


async def test_a_rate_limited_job_runs_again_without_spending_an_attempt(
    app: Conveyor, start_worker: StartWorker
) -> None:
    runs: list[int] = []

    @app.task
    async def call_api() -> int:
        runs.append(1)
        if len(runs) == 1:
            raise RateLimited(0.3)
        return len(runs)

    handle = await call_api.enqueue()
    await start_worker(concurrency=2)
    job = await handle.wait(timeout=10)
    assert job.state == JobState.COMPLETED and job.result == 2
    assert job.attempts == 1  # the limited run gave its attempt back


async def test_an_idle_worker_does_not_poll_a_rate_limited_queue(
    app: Conveyor, start_worker: StartWorker
) -> None:
    done: list[int] = []

    @app.task
    async def tick(n: int) -> None:
        done.append(n)

    claims = count_claims(app)
    await app.set_limits("default", rate="2/s")
    await app.enqueue_many([tick.call(i) for i in range(6)])
    await start_worker(concurrency=4)

    async def all_ran() -> bool:
        return len(done) == 6

    await eventually(all_ran, timeout=10)
    # 6 jobs at 2/s take about 2 s: a few claims per window, not a poll loop.
    assert claims[0] <= 30, claims[0]
    starts = sorted(
        job.started_at
        for job in await app.list_jobs("completed", limit=10)
        if job.started_at is not None
    )
    assert len(starts) == 6
    assert all((b - a).total_seconds() >= 1.0 for a, b in zip(starts, starts[2:], strict=False))


def _held(limits: dict[str | None, Limits]) -> dict[str | None, int | None]:
    return {scope: limits[scope].held_ms for scope in limits}


async def test_limits_say_how_long_a_full_window_holds_its_scope(app: Conveyor) -> None:
    await _jobs(app, 5)
    await _jobs(app, 3, group="a")
    await _jobs(app, 3, group="b")
    await app.set_limits("default", rate="2/m")
    await app.set_limits("default", group="*", rate="1/m")
    assert _held(await app.limits("default")) == {None: None, "*": None}  # room now
    assert len(await claim(app, limit=1)) == 1
    app.clock.advance(10)
    assert len(await claim(app, limit=5)) == 1  # the window of 2/m is full now
    held = await app.limits("default")
    assert held[None].rate == Rate(2, 60_000)
    queue_ms = held[None].held_ms
    assert queue_ms is not None and 49_000 < queue_ms <= 50_000 + 1_500  # free 60 s after the first
    assert held["*"].held_ms is None  # the default scope itself starts nothing
    app.clock.advance(51.6)  # the first start has left the window
    assert (await app.limits("default"))[None].held_ms is None


async def test_limits_say_how_long_a_group_is_held(app: Conveyor) -> None:
    await _jobs(app, 2, group="a")
    await _jobs(app, 2, group="b")
    await app.set_limits("default", group="*", rate="1/m")
    first = await claim(app, limit=10)  # one of each group: both windows now full
    assert sorted(c.job.group or "" for c in first) == ["a", "b"]
    held = _held(await app.limits("default"))
    assert set(held) == {"*", "a", "b"}  # groups without limits of their own, held
    assert held["*"] is None and all(58_000 < (held[g] or 0) <= 61_500 for g in "ab")
    (job,) = [c for c in first if c.job.group == "a"]
    assert await app.backend.release(  # RateLimited for 5 minutes: a's hold is longer now
        job_id=job.job.id, token=job.token, block_ms=300_000, block_group=True
    )
    assert 298_000 < (_held(await app.limits("default"))["a"] or 0) <= 300_000
    app.clock.advance(62)
    assert _held(await app.limits("default")) == {"*": None, "a": pytest.approx(238_000, abs=2_000)}
