"""Redis-only: a password in the URL is never printed (CLI tables, warnings
in the log, errors), and a missing or refused one says so in plain words."""

from __future__ import annotations

import asyncio
import logging

import pytest

from conveyor import BackendError, Conveyor
from conveyor.urls import shown

from ..redis_server import RedisServer
from .conftest import conveyor

SECRET = "s3cret-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
        (f"redis://user:{SECRET}@h/0?namespace=a", "redis://user:***@h/0?namespace=a"),
        (f"rediss://u:{SECRET}@[::1]:6380", "rediss://u:***@[::1]:6380"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
        (f"redis://:{SECRET}@h:notaport", "redis://:***@h:notaport"),
    ],
)
def test_a_shown_url_has_no_password(url: str, expected: str) -> None:
    assert shown(url) == expected


@pytest.mark.parametrize("server", [("--requirepass", SECRET, "--appendonly", "no")], indirect=True)
async def test_no_command_or_log_line_prints_the_password(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.url.replace("redis://", f"redis://:{SECRET}@")
    info = await asyncio.to_thread(conveyor, "info", "--url", url)
    assert info.returncode == 0, info.stderr
    assert ":***@" in info.stdout and SECRET not in info.stdout + info.stderr
    with caplog.at_level(logging.WARNING):
        async with Conveyor(url) as app:
            assert any("persistence is off" in w for w in app.backend.warnings)
    assert "persistence is off" in caplog.text and SECRET not in caplog.text
    bad = await asyncio.to_thread(conveyor, "info", "--url", url.replace("redis:", "ftp:"))
    assert bad.returncode == 2 and SECRET not in bad.stderr
    assert bad.stderr.count("\n") == 1


@pytest.mark.parametrize("server", [("--requirepass", SECRET)], indirect=True)
async def test_a_missing_or_wrong_password_says_so(server: RedisServer) -> None:
    missing = await asyncio.to_thread(conveyor, "info", "--url", server.url)
    assert missing.returncode == 1
    assert (
        missing.stderr == "conveyor: error: redis: the server needs a password"
        " (redis://:PASSWORD@host)\n"
    )
    wrong = server.url.replace("redis://", "redis://:nope@")
    with pytest.raises(BackendError, match="refused the user or password"):
        async with Conveyor(wrong) as app:
            await app.counts("default")
