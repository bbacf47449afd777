"""The installed package's version, as its metadata gives it (a leaf)."""

from __future__ import annotations

from functools import cache
from importlib import metadata

__all__ = ["version"]


@cache
def version() -> str:
    """Conveyor's version; ``unknown`` when run from a source tree not installed."""
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return "unknown"
