"""The demo (``examples/demo.py``) runs to the end and reports what it should.

It is run as a user would run it, in a subprocess with stdout not a terminal
(as in CI), so the live display must still end by itself.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rich.console import Console

from conveyor import JobState

ROOT = Path(__file__).parents[1]
TABLE_TITLE = "Jobs per queue and final state"
# One row of the final table: queue, completed, failed, cancelled, unfinished, total
# (any box-drawing characters, Unicode or ASCII, between the cells).
ROW = r"{queue}\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)\W+(\d+)"


def row(table: str, queue: str) -> tuple[int, ...]:
    match = re.search(ROW.format(queue=queue), table)
    assert match is not None, f"no row for queue {queue!r} in:\n{table}"
    return tuple(int(n) for n in match.groups())


@pytest.mark.timeout(120)
def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CONVEYOR_URL", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    }
    env.update(TMPDIR=str(tmp_path), PYTHONIOENCODING="utf-8", COLUMNS="120", NO_COLOR="1")

    proc = subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        encoding="utf-8",
        timeout=90,
        check=False,
    )

    out = proc.stdout
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{out}\n{proc.stderr}"
    assert "Every job finished" in out
    assert list(tmp_path.glob("conveyor-demo-*/demo.db")), "the demo did not use a fresh temp db"
    assert TABLE_TITLE in out, out
    table = out.split(TABLE_TITLE, 1)[1]
    assert "completed" in table
    assert "failed" in table
    # completed, failed, cancelled, unfinished, total
    assert row(table, "images") == (130, 0, 0, 0, 130)
    assert row(table, "reports") == (45, 0, 0, 0, 45)
    assert row(table, "imports") == (0, 20, 0, 0, 20)
    completed, failed, cancelled, unfinished, total = row(table, "email")
    assert (cancelled, unfinished, total) == (0, 0, 105)
    assert completed + failed == total
    assert failed >= 5  # the five addresses that are refused at once, plus bad luck
    assert "Dead-letter set" in table
    assert "ValueError: feed" in table
    assert "NonRetryable: mailbox" in table


async def test_demo_tables_show_whole_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the demo's store goes here
    spec = importlib.util.spec_from_file_location("conveyor_demo", ROOT / "examples" / "demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    async with demo.app:
        await demo.import_feed.enqueue("https://feeds.example.com/1.xml")
        await demo.import_feed.enqueue("https://feeds.example.com/2.xml")  # back to back
        jobs = await demo.app.list_jobs(JobState.WAITING)
    assert len({job.id for job in jobs}) == 2
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(demo.active_table(jobs, len(jobs)))
    console.print(demo.dead_letter_table(jobs, len(jobs)))
    shown = console.export_text()
    assert "…" not in shown
    assert all(shown.count(job.id) == 2 for job in jobs), shown
