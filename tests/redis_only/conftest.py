"""Fixtures of the Redis-only tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..redis_server import RedisServer


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server of this test's own, so it can be killed and restarted
    (indirect parametrization passes it extra ``redis-server`` arguments)."""
    private = RedisServer(tmp_path / "redis", extra=getattr(request, "param", ()))
    private.start()
    yield private
    private.stop()


ROOT = Path(__file__).resolve().parents[2]


def conveyor(*argv: str) -> subprocess.CompletedProcess[str]:
    """The ``conveyor`` command, run as a user would, in a wide terminal."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
