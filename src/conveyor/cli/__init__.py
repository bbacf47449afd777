"""The ``conveyor`` command: run workers, enqueue jobs, inspect and manage them.

``APP`` is an import string, ``module:attribute`` (the current directory is
importable, as with uvicorn). Commands that only read or manage the store
accept ``--url`` instead of ``--app``. Bad arguments exit with code 2 and one
line on stderr; a missing job exits 1; no command prints a traceback for
those.

This module holds the root group and ``main``, which folds every error into
that one line and its exit code; the commands live one module per family:
``worker``, ``jobs`` (``enqueue`` and ``jobs ...``), ``queues`` (``info``,
``pause``, ``resume``, ``limit``), ``schedules`` and ``metrics``, on what
``common`` shares, printing through ``tables``. Each command is a plain
decorated function named after it (``def cancel``), even where several
differ by one word.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from conveyor.cli import jobs, metrics, queues, schedules, worker, workers
from conveyor.cli.common import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_USAGE, CliError, load_app
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    InvalidInput,
    JobNotFound,
    ScheduleNotFound,
)

__all__ = ["CliError", "cli", "load_app", "main"]


@click.group()
@click.version_option(package_name="conveyor")
def cli() -> None:
    """Conveyor: background jobs with retries, priorities and delays."""


for _command in (
    worker.worker,
    jobs.enqueue,
    jobs.jobs,
    jobs.dedup,
    queues.info,
    queues.pause,
    queues.resume,
    queues.limit,
    queues.drain,
    queues.obliterate,
    queues.clean,
    schedules.schedules,
    workers.workers,
    metrics.metrics,
):
    cli.add_command(_command)


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
        _fail(str(exc), EXIT_FAILURE)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"conveyor: error: {message}", err=True)
    sys.exit(code)
