"""``conveyor enqueue`` and ``conveyor jobs``: make a job, list, show and manage jobs.

``enqueue`` needs ``--app`` to find the task; the ``jobs`` commands take
``--app`` or ``--url`` (``update-args`` needs ``--app``: the task's
signature checks the arguments). ``cancel``, ``retry``, ``remove``,
``promote``, ``delay``, ``priority`` and ``update-args`` each act on one job
through ``_manage``: a missing job exits 1 (``JobNotFound``), and so does a
job whose state the action does not apply to.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import click
import msgspec

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
from conveyor.cli.tables import print_flow, print_jobs
from conveyor.job import Job

__all__ = ["dedup", "enqueue", "jobs"]


@click.command()
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


@click.group()
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


@jobs.command("flow")
@click.argument("job_id")
@click.option("--max-jobs", default=1000, type=click.IntRange(min=1), show_default=True)
@app_option
@url_option
def show_flow(job_id: str, max_jobs: int, app_path: str | None, url: str | None) -> None:
    """Print the flow JOB_ID belongs to as a tree: each job's id, task and state."""
    app = app_from(app_path, url)
    print_flow(run(app, lambda: app.get_flow(job_id, max_jobs=max_jobs)))


@jobs.command("cancel")
@click.argument("job_id")
@app_option
@url_option
def cancel(job_id: str, app_path: str | None, url: str | None) -> None:
    """Cancel a job that has not finished."""
    app = app_from(app_path, url)
    _manage(app, app.cancel, job_id, "cancelled")


@jobs.command("retry")
@click.argument("job_id")
@click.option("--state", help="Only from this state: completed, failed or cancelled.")
@app_option
@url_option
def retry(job_id: str, state: str | None, app_path: str | None, url: str | None) -> None:
    """Send a failed or cancelled (or, with --state, a completed) job back to waiting."""
    app = app_from(app_path, url)
    _manage(app, lambda i: app.retry(i, state=state), job_id, "retried")


@jobs.command("remove")
@click.argument("job_id")
@app_option
@url_option
def remove(job_id: str, app_path: str | None, url: str | None) -> None:
    """Delete a job that is not active."""
    app = app_from(app_path, url)
    _manage(app, app.remove, job_id, "removed")


@jobs.command("promote")
@click.argument("job_id")
@app_option
@url_option
def promote(job_id: str, app_path: str | None, url: str | None) -> None:
    """Run a delayed job now."""
    app = app_from(app_path, url)
    _manage(app, app.promote, job_id, "promoted")


@jobs.command("delay")
@click.argument("job_id")
@click.argument("seconds", type=float)
@app_option
@url_option
def delay(job_id: str, seconds: float, app_path: str | None, url: str | None) -> None:
    """Run a job that has not started SECONDS from now (0: now)."""
    app = app_from(app_path, url)
    _manage(app, lambda i: app.change_delay(i, seconds), job_id, "delayed")


@jobs.command("priority")
@click.argument("job_id")
@click.argument("priority", type=int)
@click.option("--lifo/--fifo", default=None, help="First of its priority, or by ready time.")
@app_option
@url_option
def priority(
    job_id: str, priority: int, lifo: bool | None, app_path: str | None, url: str | None
) -> None:
    """Give a job that has not started another PRIORITY (-100..100)."""
    app = app_from(app_path, url)
    _manage(app, lambda i: app.change_priority(i, priority, lifo=lifo), job_id, "reprioritized")


@jobs.command("update-args")
@click.argument("job_id")
@app_option
@click.option("--args", "args_json", default="[]", help="JSON array of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
def update_args(job_id: str, app_path: str | None, args_json: str, kwargs_json: str) -> None:
    """Replace the arguments of a job that has not started."""
    app, args, kwargs = app_and_arguments(app_path, args_json, kwargs_json)
    _manage(app, lambda i: app.update_args(i, *args, **kwargs), job_id, "updated")


def _manage(
    app: Conveyor, action: Callable[[str], Awaitable[bool]], job_id: str, verb: str
) -> None:
    """Apply ``action`` to the job and print ``<verb> <job_id>``; exit 1 if there is no
    such job or ``action`` does not apply to its state (it returned False)."""

    async def act() -> bool:
        await app.get_job(job_id)  # JobNotFound for a missing id
        return await action(job_id)

    if run(app, act):
        click.echo(f"{verb} {job_id}")
    else:
        raise CliError(f"job {job_id} cannot be {verb} in its current state", EXIT_NOT_FOUND)


@jobs.command("retry-failed")
@app_option
@url_option
@click.option("--queue", "-q")
def retry_failed(app_path: str | None, url: str | None, queue: str | None) -> None:
    """Send every failed job (of a queue) back to waiting."""
    app = app_from(app_path, url)
    click.echo(f"retried {run(app, lambda: app.retry_failed(queue))} jobs")


@click.command("dedup")
@click.argument("key")
@click.option("--release", is_flag=True, help="Free the key now (end its window).")
@app_option
@url_option
def dedup(key: str, release: bool, app_path: str | None, url: str | None) -> None:
    """Print the job holding the dedup KEY (exit 1 if none); --release frees it."""
    app = app_from(app_path, url)
    owner = run(app, lambda: app.dedup_key_owner(key))
    if owner is None:
        raise CliError(f"dedup key {key!r} is free", EXIT_NOT_FOUND)
    if release and not run(app, lambda: app.release_dedup_key(key)):
        raise CliError(f"dedup key {key!r} is free", EXIT_NOT_FOUND)
    click.echo(f"released {key} (held by {owner})" if release else owner)
