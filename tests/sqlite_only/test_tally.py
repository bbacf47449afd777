"""SQLite-only: the runs a write group ends are counted by the writer, added
up, in the group's own transaction (``tally.py``): an operation rolled back
to its savepoint takes its count with it, and the others of its group keep
theirs."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState, Retention
from conveyor.backends.sqlite import finishing, tally
from conveyor.backends.sqlite.backend import SQLiteBackend
from conveyor.stats import add

from ..conformance.conftest import claim

pytestmark = pytest.mark.timeout(60)


async def test_a_rolled_back_run_is_not_counted_and_its_group_is(tmp_path: Path) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'store.db'}")

    @app.task(queue="mail")
    async def send() -> None: ...

    async with app:
        backend = app.backend
        assert isinstance(backend, SQLiteBackend)
        handles = [await send.enqueue() for _ in range(3)]
        tokens = {c.job.id: c.token for c in await claim(app, ["mail"])}
        kept, lost, failed = (h.id for h in handles)

        def complete_then_break(conn: sqlite3.Connection) -> None:
            assert finishing.complete(
                conn, backend.clock, job_id=lost, token=tokens[lost], result=b"2"
            )
            raise RuntimeError("after the completion")

        # Submitted in one turn of the loop: one write group, one transaction.
        outcomes = await asyncio.gather(
            backend.complete(job_id=kept, token=tokens[kept], result=b"1", retention=Retention()),
            backend.write(complete_then_break),
            backend.fail(
                job_id=failed,
                token=tokens[failed],
                error="E: no",
                traceback=None,
                retry_in_ms=None,
                retention=Retention(),
            ),
            return_exceptions=True,
        )
        assert outcomes[0] is True and outcomes[2] is True
        assert isinstance(outcomes[1], RuntimeError)
        assert (await app.get_job(lost)).state is JobState.ACTIVE  # type: ignore[union-attr]

        counted = add(*await app.stats("mail", since=timedelta(hours=1)))
        assert (counted.completed, counted.failed, counted.runs) == (1, 1, 2)
        totals = (await app.totals())["mail"]
        assert (totals.completed, totals.failed) == (1, 1)


def test_a_run_ends_only_in_the_writers_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "plain.db")
    with pytest.raises(TypeError, match="writer"):
        tally.ran(conn, "completed", queue="q", task="t", started_at=0, run_at=0, ended_at=1)
    conn.close()
