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
