"""Concurrency per queue in one worker: a claim takes from each of its
``QueueSlots`` only that many, and a worker's queues keep their own slots."""

from __future__ import annotations

import asyncio
import time

from conveyor import Conveyor, JobState
from conveyor.backends.values import QueueSlots

from ..conftest import StartWorker, eventually

SEEDS = {"email-sender": 5, "pdf-processing": 2, "csv-export": 1, "thumbnails": 4}


async def test_a_claim_takes_each_queue_slots_free_count(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    for queue in ("a", "b", "c"):
        await app.enqueue_many([work.configure(queue=queue).call(i) for i in range(10)])
    claimed = await app.backend.claim(
        slots=[QueueSlots(("a",), 2), QueueSlots(("b", "c"), 3)], worker_id="w", lease_ms=30_000
    )
    taken = [c.job.queue for c in claimed]
    assert taken.count("a") == 2 and taken.count("b") + taken.count("c") == 3


async def test_a_backlog_in_one_queue_never_takes_anothers_slots(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await app.enqueue_many([work.configure(queue="busy").call(i) for i in range(10)])
    claimed = await app.backend.claim(
        slots=[QueueSlots(("busy",), 2), QueueSlots(("idle",), 5)], worker_id="w", lease_ms=30_000
    )
    assert [c.job.queue for c in claimed] == ["busy", "busy"]
    assert (await app.counts("busy"))[JobState.WAITING] == 8


async def test_each_backlogged_queue_runs_exactly_its_count_at_once(
    app: Conveyor, start_worker: StartWorker
) -> None:
    """The seeds' four queues in one worker, all backlogged: from a log kept
    outside the store, no queue ever runs more than its count at once, and
    each reaches it."""
    log: list[tuple[float, str, int]] = []  # (time, queue, +1 start / -1 end)

    @app.task
    async def nap(queue: str) -> None:
        log.append((time.monotonic(), queue, 1))
        await asyncio.sleep(0.05)
        log.append((time.monotonic(), queue, -1))

    jobs = [nap.configure(queue=q).call(q) for q, count in SEEDS.items() for _ in range(count * 5)]
    await app.enqueue_many(jobs)
    await start_worker(queues=tuple(SEEDS), queue_concurrency=dict(SEEDS))

    async def all_done() -> bool:
        return sum(1 for _, _, step in log if step < 0) == len(jobs)

    await eventually(all_done, timeout=30)
    assert most_at_once(log) == SEEDS


def most_at_once(log: list[tuple[float, str, int]]) -> dict[str, int]:
    """The most jobs of each queue running at the same time in ``log``
    (an end at the same instant as a start counts first)."""
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    for _, queue, step in sorted(log):
        running[queue] = running.get(queue, 0) + step
        most[queue] = max(most.get(queue, 0), running[queue])
    return most
