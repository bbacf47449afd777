"""The ``conveyor`` command: run workers, enqueue jobs, inspect and manage them.

``APP`` is an import string, ``module:attribute`` (the current directory is
importable, as with uvicorn). Commands that only read or manage the store
accept ``--url`` instead of ``--app``. Bad arguments exit with code 2 and one
line on stderr; a missing job exits 1; no command prints a traceback for
those.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import click
import msgspec

from conveyor import validate
from conveyor.app import Conveyor
from conveyor.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    app_and_arguments,
    app_from,
    app_option,
    load_app,
    run,
    url_option,
)
from conveyor.cli.tables import print_info, print_jobs, print_schedules
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    InvalidInput,
    JobNotFound,
    ScheduleNotFound,
)
from conveyor.job import Job
from conveyor.limits import EVERY_GROUP, Limits, Rate, group_name
from conveyor.settings import WorkerSettings, parse_queues
from conveyor.urls import shown
from conveyor.worker import Worker, logs


@click.group()
@click.version_option(package_name="conveyor")
def cli() -> None:
    """Conveyor: background jobs with retries, priorities and delays."""


@cli.command()
@click.argument("app_path", metavar="APP")
@click.option(
    "--queues",
    "-q",
    help="Comma-separated queues to take jobs from, each with its own slots as name:N "
    "(e.g. email:5,pdf:2); the others share --concurrency.",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    help="Jobs run at once by the queues without a count of their own.",
)
@click.option("--lease", type=click.FloatRange(min=0.1), help="Lease seconds.")
@click.option("--grace", type=click.FloatRange(min=0), help="Shutdown grace seconds.")
@click.option("--log-level", default="INFO", show_default=True)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line, with the job's id, task, queue and attempt.",
)
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    lease: float | None,
    grace: float | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    # Until the loop's handlers are installed a signal ends the worker at
    # once, with nothing claimed yet: exit 0, as a graceful stop would.
    signal.signal(signal.SIGTERM, _exit_before_start)
    app = load_app(app_path)
    names, counts = parse_queues(queues) if queues is not None else (None, None)
    settings = WorkerSettings.from_env(
        queues=names,
        queue_concurrency=counts,
        concurrency=concurrency,
        lease_s=lease,
        shutdown_grace_s=grace,
    )
    try:
        logs.configure(log_level, json_lines=log_format == "json")
    except ValueError as exc:
        raise CliError(f"--log-level: {exc}") from exc
    runner = Worker(app, settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        signals = {"count": 0}

        def on_signal(signum: int) -> None:
            signals["count"] += 1
            if signals["count"] > 1:  # second signal: leave now, leases bring jobs back
                logging.getLogger("conveyor.worker").warning("second signal: exiting now")
                sys.stderr.flush()
                os._exit(128 + signum)
            runner.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            await runner.run()
        finally:
            await app.close()

    asyncio.run(main())
    if runner.threads_running:
        # Their threads cannot be stopped; exiting ends them (an interpreter
        # would wait for them), and their leases, no longer renewed, bring
        # their jobs back within the lease, as for a killed worker.
        logging.getLogger("conveyor.worker").warning(
            "exiting with %d sync jobs still running: they run again after their leases expire",
            runner.threads_running,
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _exit_before_start(signum: int, frame: object) -> None:
    # Nothing is claimed or connected yet; a SystemExit could be caught as the
    # app's own (load_app reports a module that exits at import).
    sys.stderr.flush()
    os._exit(0)


@cli.command()
@click.argument("task_name", metavar="TASK")
@app_option
@click.option("--args", "args_json", default="[]", help="JSON array of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--delay", type=float, help="Seconds to wait before it may run.")
@click.option("--priority", type=int, help="-100..100, higher runs first.")
@click.option("--job-id", help="Job id (an id already stored adds nothing).")
@click.option("--queue", help="Queue other than the task's.")
@click.option("--ttl", type=float, help="Seconds it may wait to start; then it expires.")
def enqueue(
    task_name: str,
    app_path: str | None,
    args_json: str,
    kwargs_json: str,
    delay: float | None,
    priority: int | None,
    job_id: str | None,
    queue: str | None,
    ttl: float | None,
) -> None:
    """Enqueue a job of TASK and print its id."""
    app, args, kwargs = app_and_arguments(app_path, args_json, kwargs_json)
    task = app.get_task(task_name)
    call = task.configure(delay=delay, priority=priority, job_id=job_id, queue=queue, ttl=ttl)
    handle = run(app, lambda: call.enqueue(*args, **kwargs), create=True)
    click.echo(handle.id if handle.created else f"{handle.id} (already existed)")


@cli.command()
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


@cli.group()
def jobs() -> None:
    """List, show and manage jobs."""


@jobs.command("list")
@app_option
@url_option
@click.option("--state", "-s", default="waiting", show_default=True)
@click.option("--queue", "-q")
@click.option("--limit", default=50, type=click.IntRange(min=1), show_default=True)
@click.option("--offset", default=0, type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_jobs(
    app_path: str | None,
    url: str | None,
    state: str,
    queue: str | None,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List jobs in one state."""
    app = app_from(app_path, url)
    found = run(app, lambda: app.list_jobs(state, queue=queue, offset=offset, limit=limit))
    if as_json:
        for job in found:
            click.echo(msgspec.json.encode(job))
        return
    print_jobs(f"{state} jobs", found)


@jobs.command("show")
@click.argument("job_id")
@app_option
@url_option
def show(job_id: str, app_path: str | None, url: str | None) -> None:
    """Print one job as JSON, with its log."""
    app = app_from(app_path, url)

    async def fetch() -> tuple[Job, Any]:
        return await app.get_job(job_id), await app.get_logs(job_id)

    job, logs = run(app, fetch)
    record = msgspec.to_builtins(job)
    record["logs"] = msgspec.to_builtins(logs)
    click.echo(json.dumps(record, indent=2))


def _manage(
    verb: str, action: Callable[[Conveyor], Callable[[str], Awaitable[bool]]]
) -> Callable[[str, str | None, str | None], None]:
    def command(job_id: str, app_path: str | None, url: str | None) -> None:
        app = app_from(app_path, url)

        async def act() -> bool:
            await app.get_job(job_id)  # JobNotFound for a missing id
            return await action(app)(job_id)

        if run(app, act):
            click.echo(f"{verb} {job_id}")
        else:
            raise CliError(f"job {job_id} cannot be {verb} in its current state", EXIT_NOT_FOUND)

    return command


for _name, _verb, _action, _help in (
    ("retry", "retried", lambda app: app.retry, "Send a failed or cancelled job back to waiting."),
    ("cancel", "cancelled", lambda app: app.cancel, "Cancel a job that has not finished."),
    ("remove", "removed", lambda app: app.remove, "Delete a job that is not active."),
    ("promote", "promoted", lambda app: app.promote, "Run a delayed job now."),
):
    jobs.command(_name, help=_help)(
        click.argument("job_id")(app_option(url_option(_manage(_verb, _action))))
    )


@jobs.command("retry-failed")
@app_option
@url_option
@click.option("--queue", "-q")
def retry_failed(app_path: str | None, url: str | None, queue: str | None) -> None:
    """Send every failed job (of a queue) back to waiting."""
    app = app_from(app_path, url)
    click.echo(f"retried {run(app, lambda: app.retry_failed(queue))} jobs")


def _pausing(paused: bool) -> Callable[[str, str | None, str | None], None]:
    def command(queue: str, app_path: str | None, url: str | None) -> None:
        app = app_from(app_path, url)
        run(app, lambda: app.pause(queue) if paused else app.resume(queue), create=True)
        click.echo(f"{'paused' if paused else 'resumed'} {queue}")

    return command


for _name, _paused, _help in (
    ("pause", True, "Stop workers from claiming jobs of QUEUE (jobs keep waiting)."),
    ("resume", False, "Let workers claim jobs of QUEUE again."),
):
    cli.command(_name, help=_help)(
        click.argument("queue")(app_option(url_option(_pausing(_paused))))
    )


@cli.command("limit")
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
        changes["max_active"] = _none_or(max_active, "--max-active", _whole)
    if rate is not None:
        changes["rate"] = _none_or(rate, "--rate", lambda v: Rate.parse(v, "--rate"))
    validate.name("queue", queue)
    if group is not None and group != EVERY_GROUP:
        group_name(group)
    app = app_from(app_path, url)

    async def apply() -> dict[str | None, Limits]:
        await app.set_limits(queue, group=group, **changes)
        return await app.limits(queue)

    limits = run(app, apply, create=True).get(group, Limits())
    click.echo(f"{queue if group is None else f'{queue} group {group}'}: {limits}")


def _whole(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        message = f"must be a whole number or 'none', got {value!r}"
        raise InvalidInput("--max-active", message) from None
    return validate.count("--max-active", number, minimum=1)


T = TypeVar("T")


def _none_or(value: str, option: str, parse: Callable[[str], T]) -> T | None:
    return None if value.lower() == "none" else parse(value)


@cli.group()
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
def add_schedule(
    task_name: str,
    app_path: str | None,
    cron_expr: str | None,
    every: float | None,
    tz: str,
    schedule_id: str | None,
    args_json: str,
    kwargs_json: str,
) -> None:
    """Add a schedule of TASK, or replace the one with the same id."""
    app, args, kwargs = app_and_arguments(app_path, args_json, kwargs_json)
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
        ),
        create=True,
    )
    click.echo(f"scheduled {added.id}")


def _schedule_action(verb: str) -> Callable[[str, str | None, str | None], None]:
    def command(schedule_id: str, app_path: str | None, url: str | None) -> None:
        app = app_from(app_path, url)
        action = {
            "paused": app.schedules.pause,
            "resumed": app.schedules.resume,
            "removed": app.schedules.remove,
        }[verb]
        if run(app, lambda: action(schedule_id)) is False:
            raise CliError(f"no schedule {schedule_id!r}", EXIT_NOT_FOUND)
        click.echo(f"{verb} {schedule_id}")

    return command


for _name, _verb, _help in (
    ("pause", "paused", "Stop a schedule from making jobs."),
    ("resume", "resumed", "Let a paused schedule make jobs again (from its next tick)."),
    ("remove", "removed", "Delete a schedule (jobs it made stay)."),
):
    schedules.command(_name, help=_help)(
        click.argument("schedule_id")(app_option(url_option(_schedule_action(_verb))))
    )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: click with errors folded into one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="conveyor", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        _fail(exc.format_message().splitlines()[0], EXIT_USAGE)
    except click.ClickException as exc:
        _fail(exc.format_message().splitlines()[0], exc.exit_code)
    except CliError as exc:
        _fail(str(exc), exc.code)
    except (JobNotFound, ScheduleNotFound) as exc:
        _fail(str(exc), EXIT_NOT_FOUND)
    except (InvalidInput, ConfigurationError) as exc:  # a bad URL among them
        _fail(str(exc), EXIT_USAGE)
    except ConveyorError as exc:
        _fail(str(exc), 1)
