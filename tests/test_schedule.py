"""Schedules without a store: parsing, ticks, catch-up and DST, with
property tests for the next tick."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import InvalidInput
from conveyor.cron import Schedule, checked, due_tick, next_tick

SEEDS = {  # the examples, as written
    "daily 08:00 UTC": "0 8 * * *",
    "Mondays 06:00": "0 6 * * 1",
    "the 1st at 00:00": "0 0 1 * *",
    "every 15 minutes": "*/15 * * * *",
}
EXPRESSIONS = [*SEEDS.values(), "*/5 * * * * *", "30 2 * * *", "0 0 29 2 *"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]
MOMENTS = st.integers(
    min_value=int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000),
    max_value=int(datetime(2035, 1, 1, tzinfo=UTC).timestamp() * 1000),
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def cron(expr: str, tz: str = "UTC") -> Schedule:
    return checked(Schedule(id="s", task="t", cron=expr, tz=tz))


@pytest.mark.parametrize("expr", list(SEEDS.values()), ids=list(SEEDS))
def test_the_seed_schedules_are_accepted_as_written(expr: str) -> None:
    assert cron(expr).cron == expr


@given(expr=st.sampled_from(EXPRESSIONS), tz=st.sampled_from(ZONES), now=MOMENTS)
@settings(max_examples=300, deadline=None)
def test_the_next_tick_is_always_later_than_now_and_due_only_once_passed(
    expr: str, tz: str, now: int
) -> None:
    schedule = cron(expr, tz)
    tick = next_tick(schedule, now)
    assert tick > now
    assert due_tick(schedule, tick - 1, now) is None  # nothing between now and the tick
    assert due_tick(schedule, tick, now) == tick  # due at its moment
    assert due_tick(schedule, tick + 1, tick) is None  # and fired once


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "61 * * * *", "* * *", "hello"])
def test_expressions_that_cannot_run_are_refused_at_creation(expr: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        cron(expr)
    assert refused.value.field == "cron"


def test_bad_zone_interval_and_both_kinds_are_refused() -> None:
    for schedule, field in [
        (Schedule(id="s", task="t", cron="0 8 * * *", tz="Mars/Olympus"), "tz"),
        (Schedule(id="s", task="t", every_s=0), "every"),
        (Schedule(id="s", task="t", cron="0 8 * * *", every_s=60), "cron"),
        (Schedule(id="bad\n", task="t", every_s=60), "id"),
        (Schedule(id="x" * 115, task="t", every_s=60), "id"),  # its ticks' ids would not fit
    ]:
        with pytest.raises(InvalidInput) as refused:
            checked(schedule)
        assert refused.value.field == field


def test_missed_ticks_make_one_job_for_the_latest() -> None:
    daily = cron("0 8 * * *")
    last = ms(datetime(2026, 1, 1, 8, tzinfo=UTC))
    now = ms(datetime(2026, 1, 6, 9, tzinfo=UTC))  # five ticks missed
    assert due_tick(daily, now, last) == ms(datetime(2026, 1, 6, 8, tzinfo=UTC))


def test_spring_forward_runs_a_skipped_time_right_after_the_gap() -> None:
    """Europe/Paris, 2026-03-29: 02:00 jumps to 03:00, so 02:30 does not exist."""
    paris = ZoneInfo("Europe/Paris")
    schedule = cron("30 2 * * *", "Europe/Paris")
    before = ms(datetime(2026, 3, 28, 12, tzinfo=paris))
    tick = datetime.fromtimestamp(next_tick(schedule, before) / 1000, paris)
    assert (tick.date().day, tick.hour, tick.minute) == (29, 3, 0)
    after = datetime.fromtimestamp(next_tick(schedule, ms(tick)) / 1000, paris)
    assert (after.day, after.hour, after.minute) == (30, 2, 30)  # back to normal


def test_fall_back_runs_a_repeated_time_once() -> None:
    """America/New_York, 2026-11-01: 01:30 happens twice; the job runs once."""
    ny = ZoneInfo("America/New_York")
    schedule = cron("30 1 * * *", "America/New_York")
    start = ms(datetime(2026, 10, 31, 12, tzinfo=ny))
    first = next_tick(schedule, start)
    second = next_tick(schedule, first)
    assert second - first > ms(datetime(2026, 11, 2, tzinfo=UTC)) - ms(
        datetime(2026, 11, 1, 12, tzinfo=UTC)
    )  # more than half a day later: the next day's 01:30, not the repeat
    assert datetime.fromtimestamp(first / 1000, ny).day == 1


def test_intervals_count_from_their_anchor() -> None:
    start = ms(datetime(2026, 1, 1, tzinfo=UTC))
    every = checked(Schedule(id="s", task="t", every_s=900, anchor_ms=start))
    assert due_tick(every, start + 899_000, None) is None
    assert due_tick(every, start + 1_000_000, None) == start + 900_000
    assert next_tick(every, start + 900_000) == start + 1_800_000
    assert due_tick(every, start + timedelta(hours=5) // timedelta(milliseconds=1), None) == (
        start + 5 * 3_600_000
    )
