"""Redis-only: the Lua scripts keep the conventions their loader states."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis
import redis.asyncio

from conveyor.backends.redis.scripts import SOURCES

SCRIPTS = sorted(
    f.name
    for f in resources.files("conveyor.backends.redis").joinpath("scripts").iterdir()
    if f.name.endswith(".lua") and f.name != "lib.lua"
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_scripts_number_is_how_many_of_its_keys_are_fixed(name: str) -> None:
    """``<transition>-<n>.lua``: no key past KEYS[n] is named literally (the
    repeating groups after them are reached by computed indices), and KEYS[n]
    is (or its header names a range ending there, as KEYS[8..10])."""
    body = resources.files("conveyor.backends.redis").joinpath("scripts", name).read_text()
    fixed = int(name.removesuffix(".lua").rsplit("-", 1)[1])
    named = [int(i) for i in re.findall(r"KEYS\[(?:\d+\.\.)?(\d+)\]", body)]
    assert max(named, default=0) == fixed


async def test_an_error_in_a_script_names_the_line_of_its_own_file(redis_url: str) -> None:
    """lib.lua's helpers are prepended as one line joined to the script's
    first, so Redis's "user_script:N" is line N of the script's file."""
    name = next(n for n in SCRIPTS if n.startswith("enqueue-"))
    body = resources.files("conveyor.backends.redis").joinpath("scripts", name).read_text()
    failing = "local jobs = cjson.decode(ARGV[3 + nq])"  # nq is nil below: arithmetic fails
    line = body.splitlines().index(failing) + 1
    # 3 keys and 2 values for the script, then emit's tail (3 keys, 2 values)
    keys, args = ("s", "q", "l", "st", "tot", "ev"), (0, "not a number", 60, "")
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        with pytest.raises(redis.exceptions.ResponseError, match=f"user_script:{line}:"):
            await client.eval(SOURCES["enqueue"], len(keys), *keys, *args)
    finally:
        await client.aclose()
