"""Real worker processes started through the CLI (``conveyor worker tests.apps:app``),
with the execution log their tasks write (see ``tests/apps.py``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Workers:
    def __init__(self, url: str, tmp_path: Path) -> None:
        self.log = tmp_path / "executions.log"
        self.stderr = tmp_path / "workers.err"
        self.env = {**os.environ, "CONVEYOR_URL": url, "CONVEYOR_TEST_LOG": str(self.log)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with self.stderr.open("ab") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "tests.apps:app", *args],
                cwd=ROOT,
                env={**self.env, **(env or {})},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.procs.append(proc)
        return proc

    def events(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split() for line in self.log.read_text().splitlines()]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


async def exited(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    return await asyncio.wait_for(asyncio.to_thread(proc.wait), timeout)
