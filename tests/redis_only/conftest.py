"""Fixtures of the Redis-only tests."""

from __future__ import annotations

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
