"""Schedules in the store, and firing them: one job per tick however many
workers fire, catch-up runs once, pause and resume, runtime changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from conveyor import Conveyor, InvalidInput, JobState
from conveyor.cron import tick_job_id
from conveyor.errors import ScheduleNotFound


def report_task(app: Conveyor) -> None:
    @app.task
    async def report(kind: str) -> str:
        return kind


async def test_a_tick_makes_one_job_however_many_workers_fire_it(app: Conveyor) -> None:
    report_task(app)
    schedule = await app.schedules.add("report", every=60, args=["daily"])
    app.clock.advance(61)
    fired = await asyncio.gather(*(app.schedules.fire_due() for _ in range(5)))
    assert sum(fired) >= 1
    assert (await app.counts("default"))[JobState.WAITING] == 1
    tick = schedule.anchor_ms + 60_000
    job = await app.get_job(tick_job_id(schedule.id, tick))
    assert (job.task, job.args) == ("report", {"kind": "daily"})
    assert await app.schedules.fire_due() == 0  # already fired


async def test_missed_ticks_make_one_job_and_listing_shows_the_next_run(app: Conveyor) -> None:
    report_task(app)
    schedule = await app.schedules.add("report", every=60, id="minutely", args=["x"])
    app.clock.advance(60 * 10 + 5)  # ten ticks passed with no worker
    assert await app.schedules.fire_due() == 1
    assert (await app.counts("default"))[JobState.WAITING] == 1
    (info,) = await app.schedules.list()
    assert info.last_tick_ms == schedule.anchor_ms + 600_000
    assert info.next_run_ms == schedule.anchor_ms + 660_000


async def test_paused_schedules_fire_nothing_and_resume_skips_what_was_missed(
    app: Conveyor,
) -> None:
    report_task(app)
    await app.schedules.add("report", every=60, args=["x"])
    await app.schedules.pause("report")
    app.clock.advance(180)
    assert await app.schedules.fire_due() == 0
    (info,) = await app.schedules.list()
    assert (info.schedule.paused, info.next_run_ms) == (True, None)
    await app.schedules.resume("report")
    assert await app.schedules.fire_due() == 0  # the paused ticks are skipped
    app.clock.advance(60)
    assert await app.schedules.fire_due() == 1


async def test_a_schedule_is_updated_by_id_and_removed(app: Conveyor) -> None:
    report_task(app)
    await app.schedules.add("report", cron="0 8 * * *", id="morning", args=["a"])
    await app.schedules.add("report", cron="0 9 * * 1", id="morning", args=["b"], tz="Europe/Paris")
    (info,) = await app.schedules.list()
    assert (info.schedule.cron, info.schedule.tz) == ("0 9 * * 1", "Europe/Paris")
    assert await app.schedules.remove("morning")
    assert await app.schedules.list() == []
    assert not await app.schedules.remove("morning")
    with pytest.raises(ScheduleNotFound):
        await app.schedules.pause("morning")


async def test_bad_schedules_are_refused_and_store_nothing(app: Conveyor) -> None:
    report_task(app)
    for kwargs, field in [
        ({"cron": "0 0 30 2 *", "args": ["x"]}, "cron"),
        ({"cron": "0 8 * * *", "tz": "Nowhere/Land", "args": ["x"]}, "tz"),
        ({"every": -5, "args": ["x"]}, "every"),
        ({"every": 60, "args": [1]}, "kind"),  # the task's arguments are checked too
    ]:
        with pytest.raises(InvalidInput) as refused:
            await app.schedules.add("report", **kwargs)  # type: ignore[arg-type]
        assert refused.value.field == field
    assert await app.schedules.list() == []


async def test_a_cron_declared_in_code_is_saved_once_and_keeps_its_state(
    app: Conveyor,
) -> None:
    @app.cron("*/15 * * * *", args=["q"])
    async def quarter(kind: str) -> str:
        return kind

    await app.schedules.save_declared()
    await app.schedules.pause("quarter")
    await app.schedules.save_declared()  # a worker restarting: same definition
    (info,) = await app.schedules.list()
    assert (info.schedule.task, info.schedule.paused) == ("quarter", True)


def _now(app: Conveyor) -> datetime:
    """Now on the app's clock (the tests move it forward)."""
    return datetime.fromtimestamp(app.clock.now_ms() / 1000, UTC)


async def test_a_limit_ends_the_schedule_after_that_many_ticks(app: Conveyor) -> None:
    report_task(app)
    await app.schedules.add("report", every=60, args=["x"], limit=2)
    for _ in range(2):
        app.clock.advance(60)
        fired = await asyncio.gather(*(app.schedules.fire_due() for _ in range(4)))
        assert sum(fired) >= 1  # however many workers fire a tick, it counts once
    (info,) = await app.schedules.list()
    assert (info.ticks, info.ended, info.next_run_ms) == (2, True, None)
    app.clock.advance(600)
    assert await app.schedules.fire_due() == 0
    assert (await app.counts("default"))[JobState.WAITING] == 2


async def test_no_tick_before_start_at_and_an_interval_counts_from_it(app: Conveyor) -> None:
    report_task(app)
    start = _now(app) + timedelta(seconds=300)
    schedule = await app.schedules.add("report", every=60, args=["x"], start_at=start)
    start_ms = int(start.timestamp() * 1000)
    (info,) = await app.schedules.list()
    assert info.next_run_ms == start_ms and not info.ended
    app.clock.advance(290)
    assert await app.schedules.fire_due() == 0
    app.clock.advance(11)
    assert await app.schedules.fire_due() == 1
    assert (await app.get_job(tick_job_id(schedule.id, start_ms))).state is JobState.WAITING
    (info,) = await app.schedules.list()
    assert info.next_run_ms == start_ms + 60_000


async def test_a_schedule_past_its_end_fires_its_last_tick_then_is_ended(app: Conveyor) -> None:
    report_task(app)
    end = _now(app) + timedelta(seconds=150)
    await app.schedules.add("report", every=60, args=["x"], end_at=end)
    app.clock.advance(61)
    assert await app.schedules.fire_due() == 1
    app.clock.advance(600)  # no worker ran over the end: the last tick before it fires once
    assert await app.schedules.fire_due() == 1
    assert await app.schedules.fire_due() == 0
    (info,) = await app.schedules.list()
    assert (info.ticks, info.ended, info.next_run_ms) == (2, True, None)
    assert info.last_tick_ms is not None and info.last_tick_ms <= int(end.timestamp() * 1000)


async def test_bad_bounds_are_refused_and_store_nothing(app: Conveyor) -> None:
    report_task(app)
    now = _now(app)
    cases = [
        ({"limit": 0}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"end_at": now - timedelta(seconds=1)}, "end_at"),
        ({"start_at": now + timedelta(hours=2), "end_at": now + timedelta(hours=1)}, "end_at"),
        ({"start_at": datetime(2030, 1, 1)}, "start_at"),  # naive
    ]
    for bounds, field in cases:
        with pytest.raises(InvalidInput) as bad:
            await app.schedules.add("report", every=60, args=["x"], **bounds)  # type: ignore[arg-type]
        assert bad.value.field == field, bounds
    assert await app.schedules.list() == []
