"""Job statistics (conveyor.stats): each outcome counted once, in its minute,
with run and wait times, per queue and task, and per queue ever; nothing
for a change that did not happen; spans checked."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor, EventSettings, JobState, Retention, Stats, StatsPoint
from conveyor.errors import InvalidInput
from conveyor.flow import flow
from conveyor.stats import add

from .conftest import claim

KEEP = Retention()
WIDE = {"since": timedelta(hours=2)}  # test clocks move: look well back


async def _all(app: Conveyor, queue: str | None = None, task: str | None = None) -> Stats:
    """Every outcome of the last two hours (and the next ten minutes) summed."""
    until = datetime.fromtimestamp(await app.backend.now_ms() / 1000 + 600, UTC)
    return add(*await app.stats(queue, task, until=until, **WIDE))  # type: ignore[arg-type]


async def _complete_one(app: Conveyor) -> None:
    """A job of a task ``work`` enqueued, claimed and completed."""

    @app.task
    async def work() -> None: ...

    await work.enqueue()
    (claimed,) = await claim(app)
    assert await app.backend.complete(
        job_id=claimed.job.id, token=claimed.token, result=b"1", retention=KEEP
    )


async def test_each_outcome_is_counted_once(app: Conveyor) -> None:
    @app.task(queue="mail", retries=1)
    async def send() -> None: ...

    done, retried, gone, stalls = [await send.enqueue() for _ in range(4)]
    finished = [await send.configure(retries=0).enqueue()]
    await app.cancel(gone.id)
    claimed = {c.job.id: c for c in await claim(app, ["mail"], lease_ms=60_000)}
    assert set(claimed) == {done.id, retried.id, stalls.id, finished[0].id}
    assert await app.backend.complete(
        job_id=done.id, token=claimed[done.id].token, result=b"1", retention=KEEP
    )
    for handle, retry_in_ms in ((retried, 60_000), (finished[0], None)):
        assert await app.backend.fail(
            job_id=handle.id,
            token=claimed[handle.id].token,
            error="E: no",
            traceback=None,
            retry_in_ms=retry_in_ms,
            retention=KEEP,
        )
    app.clock.advance(61)  # the last lease expires: a stall
    result = await app.backend.reclaim_expired(max_stalls=1, limit=10)
    assert result.requeued == [stalls.id]

    counted = await _all(app, "mail")
    assert (counted.completed, counted.failed, counted.retried) == (1, 1, 1)
    assert (counted.stalled, counted.cancelled) == (1, 1)
    assert counted.runs == 3  # the runs that ended: completed, failed, retried
    totals = (await app.totals())["mail"]
    assert (totals.completed, totals.failed, totals.retried) == (1, 1, 1)
    assert (totals.stalled, totals.cancelled) == (1, 1)


async def test_failures_without_a_run_count_no_run(app: Conveyor) -> None:
    """A job that stalled too often, and a flow's parent failed by its child,
    failed without a run that ended: counted as failed, not as runs."""

    @app.task
    async def work(name: str) -> None: ...

    stalls = await work.enqueue("stalls")
    await claim(app, lease_ms=1000)
    app.clock.advance(2)
    assert (await app.backend.reclaim_expired(max_stalls=0, limit=10)).failed == [stalls.id]
    parent = await app.add_flow(flow(work.call("parent"), children=[work.call("child")]))
    (child,) = await claim(app)
    assert await app.backend.fail(
        job_id=child.job.id,
        token=child.token,
        error="E: no",
        traceback=None,
        retry_in_ms=None,
        retention=KEEP,
    )
    await app.backend.apply_outcomes(child_ids=[child.job.id], limit=1)
    assert (await app.get_job(parent.id)).state is JobState.FAILED

    counted = await _all(app)
    assert (counted.failed, counted.stalled, counted.runs) == (3, 1, 1)  # the child ran
    totals = (await app.totals())["default"]
    assert (totals.failed, totals.stalled) == (3, 1)


@pytest.mark.parametrize(
    "events", [EventSettings(stats=False), False], ids=["stats-off", "events-off"]
)
async def test_an_app_with_statistics_off_counts_nothing(
    store_url: str, events: EventSettings | bool
) -> None:
    app = Conveyor(store_url, events=events)

    @app.task
    async def work() -> None: ...

    async with app:
        handle = await work.enqueue()
        await app.cancel(handle.id)
        await work.enqueue()
        (claimed,) = await claim(app)
        assert await app.backend.complete(
            job_id=claimed.job.id, token=claimed.token, result=b"1", retention=KEEP
        )
        assert await _all(app) == Stats()
        assert await app.totals() == {}


async def test_a_change_that_did_not_happen_counts_nothing(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    assert not await app.backend.complete(
        job_id=handle.id, token="not-the-token", result=b"1", retention=KEEP
    )
    assert await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"1", retention=KEEP
    )
    assert not await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"2", retention=KEEP
    )
    assert not await app.cancel(handle.id)  # finished: no cancel, no count
    counted = await _all(app)
    assert (counted.completed, counted.cancelled, counted.runs) == (1, 0, 1)
    assert (await app.totals())["default"].completed == 1


async def test_run_and_wait_times_are_summed(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    app.clock.advance(2)  # waits 2 s to start
    (claimed,) = await claim(app)
    app.clock.advance(3)  # runs 3 s
    assert await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"1", retention=KEEP
    )
    counted = await _all(app)
    assert counted.runs == 1
    assert 3000 <= counted.run_ms < 4000
    assert 2000 <= counted.wait_ms < 3000
    assert counted.mean_run_s is not None and 3 <= counted.mean_run_s < 4
    assert counted.mean_wait_s is not None and 2 <= counted.mean_wait_s < 3


async def test_stats_are_per_queue_and_task(app: Conveyor) -> None:
    @app.task(queue="a")
    async def one() -> None: ...

    @app.task(queue="b")
    async def two() -> None: ...

    for task in (one, one, two):
        await task.enqueue()
    for claimed in await claim(app, ["a", "b"]):
        assert await app.backend.complete(
            job_id=claimed.job.id, token=claimed.token, result=b"1", retention=KEEP
        )
    assert (await _all(app, "a")).completed == 2
    assert (await _all(app, "b")).completed == 1
    assert (await _all(app, task=two.name)).completed == 1
    assert (await _all(app, "a", two.name)).completed == 0
    assert (await _all(app)).completed == 3
    totals = await app.totals()
    assert (totals["a"].completed, totals["b"].completed) == (2, 1)


async def test_a_series_has_a_point_for_every_step(app: Conveyor) -> None:
    await _complete_one(app)
    now_ms = await app.backend.now_ms()
    until = datetime.fromtimestamp(now_ms / 1000, UTC)
    points = await app.stats(since=timedelta(hours=1), until=until, step=timedelta(minutes=5))
    assert all(isinstance(p, StatsPoint) and p.at_ms % 300_000 == 0 for p in points)
    gaps = [b.at_ms - a.at_ms for a, b in itertools.pairwise(points)]
    assert gaps == [300_000] * (len(points) - 1)
    assert points[0].at_ms <= now_ms - 3_600_000 < points[0].at_ms + 300_000
    assert points[-1].at_ms <= now_ms < points[-1].at_ms + 300_000
    assert sum(p.completed for p in points) == 1
    assert sum(1 for p in points if p.completed) == 1  # the others are zero, not left out


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"step": 90}, "step"),
        ({"step": 0}, "step"),
        (
            {"since": datetime(2026, 1, 2, tzinfo=UTC), "until": datetime(2026, 1, 1, tzinfo=UTC)},
            "since",
        ),
        ({"since": datetime(2026, 1, 1)}, "since"),  # naive
        ({"until": "now"}, "until"),
        ({"since": timedelta(days=30)}, "step"),  # 43,200 one-minute points
    ],
)
async def test_a_bad_span_is_refused(app: Conveyor, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        await app.stats(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_minutes_are_kept_for_their_age_then_dropped(app: Conveyor) -> None:
    await _complete_one(app)
    week = app.backend.events.stats_max_age_s
    assert week == 7 * 86400
    if app.url.startswith("sqlite"):
        app.clock.advance(week - 600)
        await app.backend.trim_history()
        assert (await _all_since(app, week)).completed == 1  # kept for the whole age
        app.clock.advance(1200)
        await app.backend.trim_history()
        assert (await _all_since(app, week + 3600)).completed == 0
    else:  # an hour's hash expires on its own, its last minute kept the whole age
        client = await app.backend._conn.connected()  # type: ignore[attr-defined]
        keys = [key async for key in client.scan_iter(match="*:stats:*")]
        assert len(keys) >= 1
        for key in keys:
            assert week + 3000 < await client.ttl(key) <= week + 3600
    assert (await app.totals())["default"].completed == 1  # totals are kept for good


async def _all_since(app: Conveyor, seconds: float) -> Stats:
    return add(*await app.stats(since=timedelta(seconds=seconds), step=3600))
