"""``conveyor worker APP``: run a worker in this process until a signal stops it.

The first SIGTERM or SIGINT stops claiming and lets running jobs finish within
the grace (``Worker.stop``); a second exits at once with ``128 + signum``,
leaving the leases of running jobs to bring them back. A signal before the
loop's handlers are installed exits 0, nothing having been claimed. Sync jobs
still running on threads at the end cannot be stopped: the process leaves with
``os._exit(0)`` rather than wait for them, and their jobs run again once their
leases expire, as for a killed worker. SIGUSR1 pauses the worker (no new
claims; running jobs go on, leases renewed) and SIGUSR2 resumes it
(``Worker.pause``; ``conveyor workers pause ID`` does it through the store).

``--metrics-port`` serves the app's metrics and health checks (``conveyor.cli.metrics``)
from the worker's process until the worker has stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, NoReturn

import click

from conveyor.app import Conveyor
from conveyor.cli.common import CliError, load_app
from conveyor.cli.metrics import metrics_server
from conveyor.settings import WorkerSettings, parse_queues
from conveyor.worker import Worker, logs

if TYPE_CHECKING:
    import uvicorn

__all__ = ["worker"]


@click.command()
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
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics and the health checks on this port (needs conveyor[metrics]).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port."
)
def worker(
    app_path: str,
    queues: str | None,
    concurrency: int | None,
    lease: float | None,
    grace: float | None,
    log_level: str,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    # Until the loop's handlers are installed a signal ends the worker at
    # once, with nothing claimed yet: exit 0, as a graceful stop would.
    signal.signal(signal.SIGTERM, _exit_before_start)
    for early in (signal.SIGUSR1, signal.SIGUSR2):  # a pause before the start: no-op
        signal.signal(early, signal.SIG_IGN)
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
    http = None
    if metrics_port is not None:  # before the worker: its histograms are middleware
        http = metrics_server(app, metrics_host, metrics_port)
    runner = Worker(app, settings)
    asyncio.run(_serve(app, runner, http))
    if runner.threads_running:
        _exit_leaving_threads(runner.threads_running)


async def _serve(
    app: Conveyor, runner: Worker, http: tuple[uvicorn.Server, socket.socket] | None
) -> None:
    """Run ``runner`` with the signal handlers of the module docstring (and
    the metrics server ``http`` until it is done), then close ``app``."""
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
    loop.add_signal_handler(signal.SIGUSR1, runner.pause)
    loop.add_signal_handler(signal.SIGUSR2, runner.resume)
    served = None
    if http is not None:
        server, sock = http
        served = asyncio.create_task(server.serve([sock]))
    try:
        await runner.run()
    finally:
        if served is not None:
            server.should_exit = True
            await served
        await app.close()


def _exit_leaving_threads(running: int) -> NoReturn:
    # Their threads cannot be stopped; exiting ends them (an interpreter
    # would wait for them), and their leases, no longer renewed, bring
    # their jobs back within the lease, as for a killed worker.
    logging.getLogger("conveyor.worker").warning(
        "exiting with %d sync jobs still running: they run again after their leases expire",
        running,
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
