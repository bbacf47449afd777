"""Schedules: a task run on a cron expression or at a fixed interval.

A schedule lives in the store, so every worker sees the same ones and they
can be added, changed, paused and removed at run time (``app.schedules.add``,
``conveyor schedules ...``); ``@app.cron(...)`` declares one in code, saved
when a worker starts.

Firing, with no scheduler process: every worker looks at the schedules about
once a second (``fire_due``) and, for each one due, enqueues the job of its
latest due tick with a job id made of the schedule id and the tick time. Two
workers that see the same tick enqueue the same id, and an id already stored
adds nothing, so a tick makes exactly one job however many workers run;
losing any of them loses nothing. Ticks are read on the store's clock, so
workers with skewed clocks agree.

Policies:
- Catch-up: ticks missed while no worker ran (or while paused) make one job,
  for the latest of them, not one per missed tick.
- Time zones and DST (cron only; intervals are plain elapsed time): the
  expression is read in ``tz`` (an IANA name), as Debian's cron does it
  (via ``cronsim``). At spring-forward, a time that does not exist that day
  runs at the first minute after the gap; at fall-back, a time that occurs
  twice runs once, at its first occurrence.
- Cron has 5 fields, or 6 with seconds first. An expression that can never
  match (``0 0 30 2 *``) is refused when the schedule is made.
- Bounds (BullMQ's repeat options): no tick fires before ``start_at`` (an
  interval's ticks count from it, the first at ``start_at`` itself) nor after
  ``end_at``, and a schedule that has fired ``limit`` ticks ends itself. A
  schedule with no tick left is listed as ended (``ScheduleInfo.ended``), its
  next run None; it stays stored until removed. Its ticks fired are counted
  in the store with each one (once, however many workers race on a tick),
  and the count stays when the schedule is added again with the same id.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from conveyor import validate
from conveyor.errors import InvalidInput

__all__ = [
    "Fired",
    "Schedule",
    "ScheduleInfo",
    "due_tick",
    "ended",
    "next_tick",
    "spent",
    "tick_job_id",
]

MAX_LOOKAHEAD_YEARS = 5  # a cron with no tick this far ahead is refused
TICK_DIGITS = 13  # epoch ms in a tick's job id (until the year 2286)
MAX_ID_BYTES = validate.MAX_NAME_BYTES - 1 - TICK_DIGITS  # id, "@" and tick fit a job id


class Schedule(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One schedule as stored. ``payload`` is the task's arguments as JSON."""

    id: str
    task: str
    cron: str | None = None
    every_s: float | None = None
    tz: str = "UTC"
    payload: msgspec.Raw = msgspec.Raw(b"{}")
    paused: bool = False
    anchor_ms: int = 0  # intervals count from here (when made; start_at less one interval)
    start_at_ms: int | None = None  # no tick before this
    end_at_ms: int | None = None  # no tick after this
    limit: int | None = None  # it ends once it has fired this many ticks


class Fired(NamedTuple):
    """What the store knows of a schedule's ticks: the last one fired (epoch
    ms; None: never) and how many it has fired."""

    last_ms: int | None = None
    ticks: int = 0


class ScheduleInfo(msgspec.Struct, frozen=True, kw_only=True):
    schedule: Schedule
    last_tick_ms: int | None
    next_run_ms: int | None  # None while paused, or once ended
    ticks: int = 0  # how many it has fired
    ended: bool = False  # past its end_at, or its limit reached: it fires no more


def checked(schedule: Schedule) -> Schedule:
    """``schedule`` if it is well formed, else ``InvalidInput`` naming the field."""
    validate.name("id", schedule.id)
    if len(schedule.id.encode()) > MAX_ID_BYTES:
        raise InvalidInput("id", f"must be at most {MAX_ID_BYTES} bytes (its ticks' job ids)")
    if (schedule.cron is None) == (schedule.every_s is None):
        raise InvalidInput("cron", "give a cron expression or an interval (every), not both")
    if schedule.limit is not None:
        validate.count("limit", schedule.limit, minimum=1)
    start, end = schedule.start_at_ms, schedule.end_at_ms
    if start is not None and end is not None and end <= start:
        raise InvalidInput("end_at", "must be after start_at")
    try:
        zone = ZoneInfo(schedule.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("tz", f"unknown time zone {schedule.tz!r}") from None
    if schedule.every_s is not None:
        validate.seconds("every", schedule.every_s, allow_zero=False)
        return schedule
    assert schedule.cron is not None
    if len(schedule.cron.split()) not in (5, 6):
        raise InvalidInput("cron", "needs 5 fields, or 6 with seconds first")
    now = datetime.now(zone)
    try:
        first = next(CronSim(schedule.cron, now), None)
    except CronSimError as exc:
        raise InvalidInput("cron", f"{schedule.cron!r}: {exc}") from None
    if first is None or first > now + timedelta(days=366 * MAX_LOOKAHEAD_YEARS):
        raise InvalidInput("cron", f"{schedule.cron!r} never matches")
    return schedule


def next_tick(schedule: Schedule, after_ms: int) -> int:
    """The first tick strictly after ``after_ms`` (epoch ms), and not before
    the schedule's ``start_at`` (its ``end_at`` is the caller's)."""
    if schedule.start_at_ms is not None:
        after_ms = max(after_ms, schedule.start_at_ms - 1)
    if schedule.every_s is not None:
        every = int(schedule.every_s * 1000)
        passed = max(0, (after_ms - schedule.anchor_ms) // every + 1)
        return schedule.anchor_ms + passed * every
    start = _at(after_ms, schedule.tz)
    for tick in CronSim(_cron(schedule), start):
        if tick > start:
            return _ms(tick)
    raise InvalidInput("cron", f"{schedule.cron!r} never matches")  # refused at creation


def spent(schedule: Schedule, fired: Fired) -> bool:
    """Whether the schedule has fired its ``limit`` of ticks."""
    return schedule.limit is not None and fired.ticks >= schedule.limit


def ended(schedule: Schedule, now_ms: int, fired: Fired) -> bool:
    """Whether the schedule fires no more: its limit is reached, or no tick
    it has not fired is left before its end (one due now may still fire)."""
    if spent(schedule, fired):
        return True
    if schedule.end_at_ms is None:
        return False
    if due_tick(schedule, now_ms, fired.last_ms) is not None:
        return False
    return next_tick(schedule, max(now_ms, fired.last_ms or 0)) > schedule.end_at_ms


def due_tick(schedule: Schedule, now_ms: int, last_tick_ms: int | None) -> int | None:
    """The latest tick at or before ``now_ms`` (and its ``end_at``), after the
    last one fired and not before its ``start_at`` (catch-up runs once), or
    None when nothing is due."""
    if schedule.end_at_ms is not None:
        now_ms = min(now_ms, schedule.end_at_ms)
    after = schedule.anchor_ms if last_tick_ms is None else last_tick_ms
    if schedule.start_at_ms is not None:
        after = max(after, schedule.start_at_ms - 1)
    if schedule.every_s is not None:
        every = int(schedule.every_s * 1000)
        if now_ms - schedule.anchor_ms < every:
            return None
        latest = schedule.anchor_ms + (now_ms - schedule.anchor_ms) // every * every
    else:
        latest_dt = next(CronSim(_cron(schedule), _at(now_ms + 1, schedule.tz), reverse=True), None)
        if latest_dt is None:
            return None
        latest = _ms(latest_dt)
        if latest > now_ms:
            return None
    return latest if latest > after else None


def tick_job_id(schedule_id: str, tick_ms: int) -> str:
    """The one job id of a tick: workers racing on it enqueue the same id."""
    return f"{schedule_id}@{tick_ms}"


def _cron(schedule: Schedule) -> str:
    assert schedule.cron is not None
    return schedule.cron


def _at(ms: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
