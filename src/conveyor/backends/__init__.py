"""Job stores. ``open_backend(url)`` picks one by URL scheme."""

from __future__ import annotations

from conveyor.backends.base import Backend
from conveyor.clock import Clock
from conveyor.errors import ConfigurationError
from conveyor.events import EventSettings
from conveyor.urls import shown

__all__ = ["Backend", "open_backend"]


def open_backend(
    url: str, *, clock: Clock | None = None, events: EventSettings | None = None
) -> Backend:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from conveyor.backends.sqlite import SQLiteBackend

        return SQLiteBackend(url, clock=clock, events=events)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from conveyor.backends.redis import RedisBackend
        except ImportError as exc:  # the optional dependency is missing
            needs = f"{shown(url)!r} needs: pip install 'conveyor[redis]'"
            raise ConfigurationError(needs) from exc
        return RedisBackend(url, clock=clock, events=events)
    raise ConfigurationError(f"unsupported backend URL scheme {scheme!r} in {shown(url)!r}")
