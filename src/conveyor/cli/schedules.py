"""``conveyor schedules``: list, add (or replace by id), pause, resume and remove schedules.

``add`` needs ``--app`` to find the task; the others take ``--app`` or
``--url``. A missing schedule exits 1, whether the store raises
``ScheduleNotFound`` (pause, resume) or answers False (remove).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import click

from conveyor.app import Conveyor
from conveyor.cli.common import (
    EXIT_NOT_FOUND,
    CliError,
    app_and_arguments,
    app_from,
    app_option,
    run,
    url_option,
)
from conveyor.cli.tables import print_schedules

__all__ = ["schedules"]


@click.group()
def schedules() -> None:
    """Cron and interval schedules: list, add (or replace by id), pause, resume, remove."""


@schedules.command("list")
@app_option
@url_option
def list_schedules(app_path: str | None, url: str | None) -> None:
    """Every schedule with its next run (store clock, UTC)."""
    app = app_from(app_path, url)
    print_schedules(run(app, app.schedules.list))


@schedules.command("add")
@click.argument("task_name", metavar="TASK")
@app_option
@click.option("--cron", "cron_expr", help="Cron expression: 5 fields, or 6 with seconds first.")
@click.option("--every", type=float, help="Interval in seconds (instead of --cron).")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of --cron.")
@click.option("--id", "schedule_id", help="Schedule id (default: the task's name).")
@click.option("--args", "args_json", default="[]", help="JSON array of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--start-at", help="No tick before this ISO time with a zone (2027-01-01T09:00Z).")
@click.option("--end-at", help="No tick after this ISO time with a zone.")
@click.option("--limit", type=int, help="End after this many ticks.")
def add_schedule(
    task_name: str,
    app_path: str | None,
    cron_expr: str | None,
    every: float | None,
    tz: str,
    schedule_id: str | None,
    args_json: str,
    kwargs_json: str,
    start_at: str | None,
    end_at: str | None,
    limit: int | None,
) -> None:
    """Add a schedule of TASK, or replace the one with the same id."""
    app, args, kwargs = app_and_arguments(app_path, args_json, kwargs_json)
    start, end = _moment("--start-at", start_at), _moment("--end-at", end_at)
    added = run(
        app,
        lambda: app.schedules.add(
            task_name,
            cron=cron_expr,
            every=every,
            tz=tz,
            id=schedule_id,
            args=args,
            kwargs=kwargs,
            start_at=start,
            end_at=end,
            limit=limit,
        ),
        create=True,
    )
    click.echo(f"scheduled {added.id}")


@schedules.command("pause")
@click.argument("schedule_id")
@app_option
@url_option
def pause(schedule_id: str, app_path: str | None, url: str | None) -> None:
    """Stop a schedule from making jobs."""
    app = app_from(app_path, url)
    _act(app, app.schedules.pause, schedule_id, "paused")


@schedules.command("resume")
@click.argument("schedule_id")
@app_option
@url_option
def resume(schedule_id: str, app_path: str | None, url: str | None) -> None:
    """Let a paused schedule make jobs again (from its next tick)."""
    app = app_from(app_path, url)
    _act(app, app.schedules.resume, schedule_id, "resumed")


@schedules.command("remove")
@click.argument("schedule_id")
@app_option
@url_option
def remove(schedule_id: str, app_path: str | None, url: str | None) -> None:
    """Delete a schedule (jobs it made stay)."""
    app = app_from(app_path, url)
    _act(app, app.schedules.remove, schedule_id, "removed")


def _moment(option: str, text: str | None) -> datetime | None:
    """An ISO time (``Z`` for UTC); the zone is checked with the schedule."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"{option} is not an ISO time such as 2027-01-01T09:00Z") from None


def _act(
    app: Conveyor, action: Callable[[str], Coroutine[Any, Any, object]], schedule_id: str, verb: str
) -> None:
    """Apply ``action`` to the schedule and print ``<verb> <schedule_id>``; exit 1 if
    ``action`` answers False (no such schedule)."""
    if run(app, lambda: action(schedule_id)) is False:
        raise CliError(f"no schedule {schedule_id!r}", EXIT_NOT_FOUND)
    click.echo(f"{verb} {schedule_id}")
