"""Global concurrency per queue: claims by any number of workers never make
more than ``max_active`` jobs of the queue active at once."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, InvalidInput, JobState, Retention

from .conftest import claim


async def test_claims_never_exceed_the_queues_max_active(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.call(i) for i in range(10)])
    await app.set_limits("default", max_active=3)
    rounds = await asyncio.gather(*(claim(app, limit=2, worker=f"w{i}") for i in range(4)))
    held = [c for round_ in rounds for c in round_]
    assert 1 <= len(held) <= 3  # racing claims may skip each other's candidates
    held += await claim(app, limit=5)
    assert len(held) == 3
    assert await claim(app, limit=5) == []  # full
    first = held[0]
    assert await app.backend.complete(
        job_id=first.job.id, token=first.token, result=b"null", retention=Retention()
    )
    (next_one,) = await claim(app, limit=5)  # one slot free again
    assert next_one.job.state == JobState.ACTIVE
    await app.set_limits("default", max_active=None)
    assert len(await claim(app, limit=10)) == 6  # no limit: the rest


async def test_other_queues_are_not_limited(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.configure(queue=q).call(i) for q in ("a", "b") for i in range(3)])
    await app.set_limits("a", max_active=1)
    claimed = await claim(app, ["a", "b"], limit=10)
    assert sorted(c.job.queue for c in claimed) == ["a", "b", "b", "b"]


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3"])
async def test_a_bad_max_active_is_refused(app: Conveyor, bad: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        await app.set_limits("default", max_active=bad)  # type: ignore[arg-type]
    assert refused.value.field == "max_active"
