"""Loading the Lua scripts: one per transition, with what it uses of ``lib.lua``
prepended.

A script's file is ``<transition>-<n>.lua``, ``n`` being how many of its KEYS
are fixed (``KEYS[1]`` to ``KEYS[n]``, named in its header); the groups of keys
that repeat after them (per queue, per job) are stated once in the header.

A script that writes events runs as a function of its own, after which
lib.lua's ``flush_events`` adds the events it made to the stream in one
entry; its first line stays the first line of its file.

Scripts are registered with redis-py's ``register_script``, which calls
EVALSHA and reloads a script transparently when Redis answers NOSCRIPT (after a
restart, a failover or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redis.commands.core import AsyncScript

from conveyor.job import JobState


class Code(enum.IntEnum):
    """Every code a script returns (its header says which it may)."""

    PEEK_CHANGED = -1  # enqueue: a peeked dedup key names another job now: nothing written
    STALE = 0  # the token is not current, the job is not in a state that allows it,
    # or (settle) nothing is due for that child and parent
    DONE = 1
    PARENT_FAILED = 2  # settle: applied, and the parent failed: its own outcome is due


_THEN_FLUSH = "local r__ = main__() flush_events() return r__"
_DEFINES = re.compile(r"^local (?:function )?(\w+)", re.MULTILINE)


def _sources() -> dict[str, str]:
    folder = resources.files("conveyor.backends.redis").joinpath("scripts")
    files = {f.name: f.read_text("utf-8") for f in folder.iterdir() if f.name.endswith(".lua")}
    lib = _paragraphs(files.pop("lib.lua"))
    sources = {}
    for name, body in files.items():
        helpers = _needed(lib, body)
        if "flush_events" in helpers:  # it emits: its events go out as it ends
            body = f"local function main__() {body}\nend {_THEN_FLUSH}"
        sources[name.split("-", 1)[0]] = _one_line(helpers) + body
    return sources


def _one_line(lua: str) -> str:
    """Helpers as one line before a script's own first line, so that an error
    inside the script names the line of its own file. (lib.lua keeps its
    comments on lines of their own and no line starts with a parenthesis, so
    joining its lines changes nothing.)"""
    code = [line.strip() for line in lua.splitlines()]
    code = [line for line in code if line and not line.startswith("--")]
    return " ".join(code) + " " if code else ""


def _paragraphs(lib: str) -> list[tuple[set[str], str]]:
    """lib.lua's paragraphs (blank-line separated) that define something, with
    the names each defines."""
    found = []
    for paragraph in lib.split("\n\n"):
        names = set(_DEFINES.findall(paragraph))
        if names:
            found.append((names, paragraph + "\n\n"))
    return found


def _code(lua: str) -> str:
    """Lua without its comments: a helper named in a comment is not used."""
    return re.sub(r"--[^\n]*", "", lua)


def _needed(lib: list[tuple[set[str], str]], body: str) -> str:
    """The paragraphs of lib.lua that ``body`` uses, directly or through others,
    in lib.lua's order. Every local a script defines costs each call of it (25
    small functions took about 5 us a call), so a script carries only its own."""
    used = [False] * len(lib)
    text = _code(body)
    while True:
        more = [
            i
            for i, (names, _) in enumerate(lib)
            if not used[i] and any(re.search(rf"\b{name}\b", text) for name in names)
        ]
        if not more:
            return "".join(paragraph for i, (_, paragraph) in enumerate(lib) if used[i])
        for i in more:
            used[i] = True
            text += _code(lib[i][1])


SOURCES = _sources()
# The scripts that write events and count outcomes: their callers append
# TAIL_KEYS keys and TAIL_ARGS arguments (lib.lua's emit takes them off again).
EMITS = frozenset(name for name, source in SOURCES.items() if "EVENT_BOUNDS" in source)
TAIL_KEYS = 3  # this hour's statistics, the totals, the event stream
TAIL_ARGS = 2  # the statistics' time to live, the stream's bound


def states_arg(states: Sequence[JobState]) -> str:
    """The states a script accepts a job in, each between commas
    (``,failed,cancelled,``; found with ``string.find``), or '' for any."""
    return "," + ",".join(state.value for state in states) + "," if states else ""


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
