"""Loading the Lua scripts: one per transition, ``lib.lua`` prepended to each.

Scripts are registered with redis-py's ``register_script``, which calls
EVALSHA and reloads a script transparently when Redis answers NOSCRIPT (after a
restart, a failover or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import enum
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript


class Code(enum.IntEnum):
    """What the fenced scripts return."""

    STALE = 0  # the token is not current, or the job is not in a state that allows it
    DONE = 1


def _sources() -> dict[str, str]:
    folder = resources.files("conveyor.backends.redis").joinpath("scripts")
    files = {f.name: f.read_text("utf-8") for f in folder.iterdir() if f.name.endswith(".lua")}
    lib = files.pop("lib.lua")
    return {name.split("-", 1)[0]: lib + "\n" + body for name, body in files.items()}


SOURCES = _sources()


class Scripts:
    """The registered scripts of one client, by transition name."""

    def __init__(self, client: Any) -> None:
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in SOURCES.items()
        }

    def __getitem__(self, name: str) -> AsyncScript:
        return self._scripts[name]

    async def load(self, client: Any) -> None:
        """Load every script now, so the first pipelined calls find them."""
        async with client.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.script)
            await pipe.execute()
