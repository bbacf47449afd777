"""Redis-only: the Lua scripts keep the conventions their loader states."""

from __future__ import annotations

import re
from importlib import resources

import pytest

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
