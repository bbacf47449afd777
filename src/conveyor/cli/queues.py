"""``conveyor info``, ``pause``, ``resume``, ``limit``, ``drain``,
``obliterate`` and ``clean``: the queues of a store.

``info`` only reads, so it refuses a SQLite file that does not exist; ``pause``,
``resume`` and ``limit`` write a queue's settings and create the file if need
be; ``drain``, ``obliterate`` and ``clean`` remove jobs and print how many
(``obliterate`` refused while jobs run, without ``--force``: exit 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from conveyor import validate
from conveyor.cli.common import CliError, app_from, app_option, run, url_option
from conveyor.cli.tables import print_info
from conveyor.errors import InvalidInput
from conveyor.limits import EVERY_GROUP, Limits, Rate, group_name
from conveyor.urls import shown

__all__ = ["clean", "drain", "info", "limit", "obliterate", "pause", "resume"]

T = TypeVar("T")


@click.command()
@app_option
@url_option
def info(app_path: str | None, url: str | None) -> None:
    """Show queues (jobs per state, paused), their limits and live workers."""
    app = app_from(app_path, url)

    async def gather() -> tuple[Any, Any, dict[str, dict[str | None, Limits]]]:
        queues = await app.queues()
        limits = {queue.name: await app.limits(queue.name) for queue in queues}
        return queues, await app.workers(), limits

    queues, workers, limits = run(app, gather)
    print_info(shown(app.url), app.backend.warnings, queues, limits, workers)


@click.command("pause")
@click.argument("queue")
@app_option
@url_option
def pause(queue: str, app_path: str | None, url: str | None) -> None:
    """Stop workers from claiming jobs of QUEUE (jobs keep waiting)."""
    app = app_from(app_path, url)
    run(app, lambda: app.pause(queue), create=True)
    click.echo(f"paused {queue}")


@click.command("resume")
@click.argument("queue")
@app_option
@url_option
def resume(queue: str, app_path: str | None, url: str | None) -> None:
    """Let workers claim jobs of QUEUE again."""
    app = app_from(app_path, url)
    run(app, lambda: app.resume(queue), create=True)
    click.echo(f"resumed {queue}")


@click.command("limit")
@click.argument("queue")
@app_option
@url_option
@click.option("--group", help="Limit one group of QUEUE, or '*' for each group's default.")
@click.option(
    "--max-active", "max_active", help="Jobs running at once across all workers, or 'none'."
)
@click.option("--rate", help="Starts per window across all workers, e.g. 100/m, or 'none'.")
def limit(
    queue: str,
    app_path: str | None,
    url: str | None,
    group: str | None,
    max_active: str | None,
    rate: str | None,
) -> None:
    """Set (or with 'none' lift) QUEUE's limits, or a group's; show what is set."""
    if max_active is None and rate is None:
        raise CliError("give --max-active and/or --rate")
    changes: dict[str, Any] = {}
    if max_active is not None:
        changes["max_active"] = _none_or(max_active, _whole)
    if rate is not None:
        changes["rate"] = _none_or(rate, lambda v: Rate.parse(v, "--rate"))
    validate.name("queue", queue)
    if group is not None and group != EVERY_GROUP:
        group_name(group)
    app = app_from(app_path, url)

    async def apply() -> dict[str | None, Limits]:
        await app.set_limits(queue, group=group, **changes)
        return await app.limits(queue)

    limits = run(app, apply, create=True).get(group, Limits())
    click.echo(f"{queue if group is None else f'{queue} group {group}'}: {limits}")


@click.command("drain")
@click.argument("queue")
@click.option("--delayed", is_flag=True, help="Delayed jobs too.")
@app_option
@url_option
def drain(queue: str, delayed: bool, app_path: str | None, url: str | None) -> None:
    """Delete the waiting (and delayed) jobs of QUEUE; running ones finish."""
    app = app_from(app_path, url)
    click.echo(f"drained {run(app, lambda: app.drain(queue, delayed=delayed))} jobs")


@click.command("obliterate")
@click.argument("queue")
@click.option("--force", is_flag=True, help="Even with jobs running (they lose their leases).")
@app_option
@url_option
def obliterate(queue: str, force: bool, app_path: str | None, url: str | None) -> None:
    """Delete QUEUE and every job in it."""
    app = app_from(app_path, url)
    removed = run(app, lambda: app.obliterate(queue, force=force))
    click.echo(f"obliterated {queue}: {removed} jobs")


@click.command("clean")
@click.argument("state")
@click.option("--queue", "-q")
@click.option(
    "--older-than",
    type=float,
    default=0.0,
    help="Seconds since it finished (waiting, delayed: since its enqueue).",
)
@click.option("--keep", type=click.IntRange(min=0), default=0, help="Spare the newest N.")
@click.option("--limit", type=click.IntRange(min=1), default=10_000, show_default=True)
@app_option
@url_option
def clean(
    state: str,
    queue: str | None,
    older_than: float,
    keep: int,
    limit: int,
    app_path: str | None,
    url: str | None,
) -> None:
    """Delete jobs in STATE (completed, failed, cancelled, waiting, delayed)."""
    app = app_from(app_path, url)
    removed = run(
        app, lambda: app.clean(state, queue=queue, older_than=older_than, keep=keep, limit=limit)
    )
    click.echo(f"cleaned {removed} jobs")


def _whole(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        message = f"must be a whole number or 'none', got {value!r}"
        raise InvalidInput("--max-active", message) from None
    return validate.count("--max-active", number, minimum=1)


def _none_or(value: str, parse: Callable[[str], T]) -> T | None:
    return None if value.lower() == "none" else parse(value)
