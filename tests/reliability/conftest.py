"""Fixtures for the reliability tests: real worker processes on either store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor

from .. import apps
from ..processes import Workers


@pytest.fixture
def workers(store_url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(store_url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[Conveyor]:
    async with apps.build(store_url) as app:
        yield app


# -- the chaos suite (tests/reliability/test_chaos.py) -----------------------------
# `--chaos-full` is known when pytest is pointed at tests/reliability (or a file in
# it); from anywhere, CONVEYOR_CHAOS=full does the same.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        default=False,
        help="run the chaos scenarios at the issue's full sizes (as CONVEYOR_CHAOS=full)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos(full_timeout): a chaos scenario; full mode raises its timeout"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from .chaos import full_mode

    if not full_mode(config):
        return
    for item in items:
        marker = item.get_closest_marker("chaos")
        if marker is not None and "full_timeout" in marker.kwargs:  # wins over the quick one
            item.add_marker(pytest.mark.timeout(marker.kwargs["full_timeout"]), append=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from .chaos import SUMMARIES

    lines = terminalreporter.config.stash.get(SUMMARIES, [])
    if lines:
        terminalreporter.section("chaos summary")
        for line in lines:
            terminalreporter.write_line(line)
