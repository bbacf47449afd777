"""What every ``conveyor`` command shares: finding the app, running on its store, errors.

A command names its app with ``--app module:attribute`` (``load_app``; the
current directory is importable, as with uvicorn) or, if it only reads or
manages the store, its store with ``--url`` (``app_from``). ``run`` runs one
coroutine with the app open; a command that does not create (``create=False``,
the read commands) refuses a SQLite file that does not exist. A ``CliError``
carries the one line ``main`` prints and the exit code: ``EXIT_USAGE`` (2) for
bad arguments, ``EXIT_NOT_FOUND`` (1) for a missing job or schedule.
``--args``/``--kwargs`` are parsed here as strict JSON (no NaN or Infinity).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from conveyor.app import Conveyor

__all__ = [
    "EXIT_FAILURE",
    "EXIT_NOT_FOUND",
    "EXIT_USAGE",
    "CliError",
    "app_and_arguments",
    "app_from",
    "app_option",
    "json_arg",
    "load_app",
    "refuse_missing_store",
    "run",
    "url_option",
]

T = TypeVar("T")

EXIT_USAGE = 2  # bad arguments
EXIT_FAILURE = 1  # the store failed or refused, or has no such store, job or schedule
EXIT_NOT_FOUND = EXIT_FAILURE


class CliError(Exception):
    """An error ``main`` prints as one line, then exits with ``code`` (usage unless given)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def load_app(target: str) -> Conveyor:
    """The ``Conveyor`` app at ``module:attribute``; a CliError if it cannot be imported."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CliError(f"APP must look like module:attribute, got {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:  # the module itself failed: a syntax error, a raise at import
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except SystemExit as exc:
        raise CliError(f"importing {module_name!r} exited (code {exc.code})") from None
    app = getattr(module, attribute, None)
    if not isinstance(app, Conveyor):
        raise CliError(f"{target!r} is not a Conveyor app")
    return app


def app_from(app: str | None, url: str | None) -> Conveyor:
    """The app of ``--app`` if given, else one on the store of ``--url``."""
    if app:
        return load_app(app)
    return Conveyor(url)


def run(app: Conveyor, work: Callable[[], Coroutine[Any, Any, T]], *, create: bool = False) -> T:
    """Run ``work`` on the app's store; a command that only reads or manages
    what is stored (not ``create``) refuses a SQLite file that does not exist,
    rather than creating an empty store at a mistyped path."""
    if not create:
        refuse_missing_store(app)

    async def main() -> T:
        async with app:
            return await work()

    return asyncio.run(main())


def refuse_missing_store(app: Conveyor) -> None:
    """A CliError when the app's store is a SQLite file that does not exist."""
    path = getattr(app.backend, "path", None)
    if isinstance(path, str):
        try:
            found = Path(path).exists()
        except OSError as exc:
            raise CliError(
                f"cannot look for a store at {path}: {exc.strerror}", EXIT_FAILURE
            ) from None
        if not found:
            raise CliError(f"no store at {path}", EXIT_FAILURE)


app_option = click.option(
    "--app", "app_path", envvar="CONVEYOR_APP", help="module:attribute of the app."
)
url_option = click.option("--url", envvar="CONVEYOR_URL", help="Store URL (without --app).")


def app_and_arguments(
    app_path: str | None, args_json: str, kwargs_json: str
) -> tuple[Conveyor, list[Any], dict[str, Any]]:
    """The app (``--app`` is needed to find a task) and ``--args``/``--kwargs``."""
    if not app_path:
        raise CliError("--app (or CONVEYOR_APP) is required to find the task")
    app = load_app(app_path)
    return app, json_arg("--args", args_json, list), json_arg("--kwargs", kwargs_json, dict)


def json_arg(option: str, raw: str, kind: type[T]) -> T:
    """``raw`` parsed as JSON of ``kind`` (list or dict), or a CliError naming ``option``."""
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except ValueError as exc:  # json.JSONDecodeError, or NaN/Infinity (_not_json)
        raise CliError(f"{option} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise CliError(f"{option} is nested too deeply") from None
    if not isinstance(value, kind):
        raise CliError(f"{option} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")
