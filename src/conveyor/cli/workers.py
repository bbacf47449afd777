"""``conveyor workers``: list the live workers, and pause or resume one.

A pause or resume is left in the store for the worker, which obeys it at
its next heartbeat (``heartbeat_s``, 5 s by default): no new claims, its
running jobs go on. An id no live worker has exits 1.
"""

from __future__ import annotations

import click

from conveyor.cli.common import EXIT_NOT_FOUND, CliError, app_from, app_option, run, url_option
from conveyor.cli.tables import print_workers

__all__ = ["workers"]


@click.group()
def workers() -> None:
    """List live workers; pause or resume one."""


@workers.command("list")
@app_option
@url_option
def list_workers(app_path: str | None, url: str | None) -> None:
    """Every worker with a recent heartbeat, paused ones marked."""
    app = app_from(app_path, url)
    print_workers(run(app, app.workers))


@workers.command("pause")
@click.argument("worker_id")
@app_option
@url_option
def pause(worker_id: str, app_path: str | None, url: str | None) -> None:
    """Stop WORKER_ID claiming jobs (at its next heartbeat)."""
    app = app_from(app_path, url)
    if not run(app, lambda: app.pause_worker(worker_id)):
        raise CliError(f"no live worker {worker_id!r}", EXIT_NOT_FOUND)
    click.echo(f"pausing {worker_id}")


@workers.command("resume")
@click.argument("worker_id")
@app_option
@url_option
def resume(worker_id: str, app_path: str | None, url: str | None) -> None:
    """Let a paused WORKER_ID claim jobs again (at its next heartbeat)."""
    app = app_from(app_path, url)
    if not run(app, lambda: app.resume_worker(worker_id)):
        raise CliError(f"no live worker {worker_id!r}", EXIT_NOT_FOUND)
    click.echo(f"resuming {worker_id}")
