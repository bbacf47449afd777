"""How a child process finds a function: by its module and qualified name.

A sandboxed task runs in a child process that imports its function afresh
(``conveyor.worker.sandbox``), so the function must be defined at the top level of
an importable module. This module is a leaf: it imports nothing from
Conveyor but its errors.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from conveyor.errors import ConfigurationError

__all__ = ["import_path", "resolve"]


def import_path(fn: Callable[..., Any]) -> tuple[str, str]:
    """The module and qualified name a child imports ``fn`` by; raises
    ``ConfigurationError`` for a function that no child could import."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigurationError(f"sandbox=True needs a plain function, not {fn!r}")
    if module == "__main__" or "<" in qualname:  # <locals>, <lambda>
        raise ConfigurationError(
            f"sandbox=True: {module}.{qualname} cannot be imported by a child process; "
            "define it at the top level of an importable module"
        )
    return module, qualname


def resolve(module: str, qualname: str) -> Callable[..., Any]:
    """The function named so, imported; a name bound to what ``@app.task``
    returned (not a function) gives the function it wraps (``__wrapped__``).
    A function is taken as it is, decorated or not."""
    target: Any = importlib.import_module(module)
    for name in qualname.split("."):
        target = getattr(target, name)
    if not inspect.isfunction(target):
        target = getattr(target, "__wrapped__", target)
    if not callable(target):
        raise TypeError(f"{module}.{qualname} is a {type(target).__name__}, not a function")
    fn: Callable[..., Any] = target
    return fn
