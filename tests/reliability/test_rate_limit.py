"""A queue rate limit across worker processes, read from the execution log:
50 jobs/s with 4 workers, one SIGKILLed every 3 s, never starts more than 51
jobs in any one-second window, and loses nothing (the chaos checker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor

from .chaos import Plan, chaos_seed, full_mode, parse_log, report, run_chaos
from .test_chaos import assert_no_loss_and_duplicates_explained, store_name

RATE = 50


def busiest_second(starts: list[float]) -> int:
    """The most starts within any window of one second (sliding, not fixed)."""
    starts = sorted(starts)
    most, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def test_busiest_second_slides_over_the_log() -> None:
    assert busiest_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert busiest_second([0.9, 1.1]) == 2  # across the edge of a fixed second
    assert busiest_second([]) == 0


@pytest.mark.chaos(full_timeout=600)
@pytest.mark.timeout(150)
async def test_a_rate_limit_holds_across_killed_workers(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    full = full_mode(request.config)
    plan = Plan(
        name="rate-limit",
        jobs=3_000 if full else 600,
        workers=4,
        concurrency=4,
        lease_s=1.5,
        tick_s=3.0,
        kill_workers=True,
        spread_s=1.0,
        job_ms=(5.0, 40.0),
        min_ticks=4,
        max_chaos_s=300 if full else 60,
    )

    async def limit(app: Conveyor) -> None:
        await app.set_limits("default", rate=f"{RATE}/s")

    outcome = await run_chaos(plan, store_url, tmp_path / "chaos", chaos_seed(), prepare=limit)
    events, _ = parse_log((tmp_path / "chaos" / "executions.log").read_text())
    starts = sorted(event.at for event in events if event.kind == "start")
    most = busiest_second(starts)
    # The pace after the first window (the last jobs of killed workers come back later).
    bulk = starts[RATE : len(starts) * 9 // 10]
    pace = (len(bulk) - 1) / (bulk[-1] - bulk[0])
    report(
        request.config,
        f"{outcome.summary(store_name(store_url))} busiest_second={most} "
        f"starts={len(starts)} pace={pace:.1f}/s",
    )
    assert_no_loss_and_duplicates_explained(outcome)
    assert outcome.kills >= plan.min_ticks, outcome.context()
    assert most <= RATE + 1, outcome.context()
    assert pace >= RATE * 0.9, outcome.context()  # held by the limit, not stalled
