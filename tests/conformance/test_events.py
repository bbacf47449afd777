"""Job events (conveyor.events): one per change, written with the change,
read in order, each once, across processes, resumable, with a gap marker
after trimming, and none for a change that did not happen."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from conveyor import Conveyor, JobState, Retention, Worker, WorkerSettings
from conveyor.backends.values import ProgressUpdate
from conveyor.errors import InvalidInput, JobFailed, JobTimeout
from conveyor.events import EventKind, EventSettings, JobEvent

from ..conftest import eventually
from .conftest import claim

KEEP = Retention()


async def _after(app: Conveyor, start: str | None) -> list[JobEvent]:
    """Every event after ``start``, read page by page."""
    events: list[JobEvent] = []
    cursor = start
    while True:
        page = await app.backend.read_events(after=cursor, limit=100)
        assert not page.gap
        events += page.events
        if len(page.events) < 100:
            return events
        cursor = page.events[-1].id


def _kinds(events: list[JobEvent], job_id: str) -> list[str]:
    return [event.kind.value for event in events if event.job_id == job_id]


async def test_every_change_of_a_run_writes_its_event(app: Conveyor) -> None:
    @app.task(retries=1, queue="mail")
    async def send() -> None: ...

    start = await app.backend.last_event_id()
    handle = await send.enqueue()
    (first,) = await claim(app, ["mail"])
    update = ProgressUpdate(progress=0.5, detail={"step": "half"})
    await app.backend.report_progress(job_id=handle.id, token=first.token, update=update)
    assert await app.backend.fail(
        job_id=handle.id,
        token=first.token,
        error="E: no",
        traceback=None,
        retry_in_ms=1000,
        retention=KEEP,
    )
    app.clock.advance(1.5)
    (second,) = await claim(app, ["mail"])
    assert await app.backend.complete(
        job_id=handle.id, token=second.token, result=b'{"sent": 1}', retention=KEEP
    )
    events = await _after(app, start)
    assert _kinds(events, handle.id) == [
        "enqueued",
        "active",
        "progress",
        "retrying",
        "waiting",
        "active",
        "completed",
    ]
    mine = [event for event in events if event.job_id == handle.id]
    assert all((e.queue, e.task) == ("mail", send.name) for e in mine)
    enqueued, active, progress, retrying, _, again, completed = mine
    assert enqueued.state is JobState.WAITING
    assert (active.attempt, again.attempt) == (1, 2)
    assert (progress.progress, progress.detail) == (0.5, {"step": "half"})
    assert (retrying.state, retrying.error) == (JobState.DELAYED, "E: no")
    assert retrying.run_at_ms is not None and retrying.run_at_ms > enqueued.at_ms
    assert (completed.state, completed.result) == (JobState.COMPLETED, {"sent": 1})
    ids = [event.id for event in events]
    assert len(set(ids)) == len(ids)


async def test_managing_a_job_writes_its_events(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    start = await app.backend.last_event_id()
    later = await work.configure(delay=60).enqueue()
    await app.promote(later.id)
    gone = await work.enqueue()
    assert await app.cancel(gone.id)
    assert await app.retry(gone.id)
    assert await app.remove(gone.id)
    (claimed,) = await claim(app)
    assert await app.backend.fail(
        job_id=claimed.job.id,
        token=claimed.token,
        error="E: final",
        traceback=None,
        retry_in_ms=None,
        retention=KEEP,
    )
    events = await _after(app, start)
    assert _kinds(events, later.id) == ["enqueued", "waiting", "active", "failed"]
    assert _kinds(events, gone.id) == ["enqueued", "cancelled", "waiting", "removed"]
    removed = next(e for e in events if e.kind is EventKind.REMOVED)
    assert (removed.state, removed.task) == (None, work.name)
    failed = next(e for e in events if e.kind is EventKind.FAILED)
    assert failed.error == "E: final"


async def test_a_stalled_job_writes_stalled(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    start = await app.backend.last_event_id()
    handle = await work.enqueue()
    await claim(app, lease_ms=1000)
    app.clock.advance(2)
    result = await app.backend.reclaim_expired(max_stalls=1, limit=10)
    assert result.requeued == [handle.id]
    (stalled,) = [e for e in await _after(app, start) if e.kind is EventKind.STALLED]
    assert (stalled.job_id, stalled.state) == (handle.id, JobState.WAITING)


async def test_a_change_that_did_not_happen_writes_nothing(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.enqueue()
    (claimed,) = await claim(app)
    start = await app.backend.last_event_id()
    # A stale token, a second completion, a cancel of a finished job and an
    # enqueue of an id that exists change nothing: no events.
    assert not await app.backend.complete(
        job_id=handle.id, token="stale", result=b"1", retention=KEEP
    )
    assert await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"1", retention=KEEP
    )
    done = await app.backend.last_event_id()
    assert not await app.backend.complete(
        job_id=handle.id, token=claimed.token, result=b"2", retention=KEEP
    )
    assert not await app.cancel(handle.id)
    assert await work.configure(job_id=handle.id).enqueue() is not None
    assert [e.kind for e in await _after(app, start)] == [EventKind.COMPLETED]
    assert await app.backend.last_event_id() == done


async def test_a_subscriber_sees_another_processs_events_in_order_once(
    app: Conveyor, store_url: str
) -> None:
    events = await app.events(kinds=["enqueued"]).start()
    script = (
        "import asyncio, sys\n"
        "from conveyor import Conveyor\n"
        "app = Conveyor(sys.argv[1])\n"
        "@app.task\n"
        "async def work(n: int) -> None: ...\n"
        "async def main():\n"
        "    async with app:\n"
        "        for n in range(40):\n"
        "            await work.configure(job_id=f'p-{n}').enqueue(n)\n"
        "asyncio.run(main())\n"
    )
    producer = await asyncio.create_subprocess_exec(sys.executable, "-c", script, store_url)
    seen: list[JobEvent] = []
    async with asyncio.timeout(30):
        async for event in events:
            seen.append(event)
            if len(seen) == 40:
                break
    assert await producer.wait() == 0
    assert [event.job_id for event in seen] == [f"p-{n}" for n in range(40)]
    assert len({event.id for event in seen}) == 40


async def test_a_subscriber_resumes_after_an_id(app: Conveyor) -> None:
    @app.task
    async def work() -> None: ...

    handles = [await work.enqueue() for _ in range(5)]
    everything = await _after(app, None)
    mark = next(e.id for e in everything if e.job_id == handles[1].id)
    resumed = app.events(after=mark)
    got = [await anext(resumed) for _ in range(3)]
    assert [e.job_id for e in got] == [h.id for h in handles[2:]]
    assert resumed.last_id == got[-1].id


async def _read_in_pages(app: Conveyor, start: str | None, n: int) -> list[JobEvent]:
    """The ``n`` events after ``start``, read in pages of two: each once, in
    order, and from after any of them the rest."""
    pages, cursor = [], start
    for _ in range((n + 1) // 2):
        page = await app.backend.read_events(after=cursor, limit=2)
        assert not page.gap
        pages.append(page.events)
        cursor = page.events[-1].id
    assert [len(p) for p in pages] == [2] * (n // 2) + [1] * (n % 2)
    events = [e for p in pages for e in p]
    assert len({e.id for e in events}) == n
    assert await app.backend.last_event_id() == events[-1].id
    assert (await app.backend.read_events(after=events[-1].id, limit=10)).events == []
    for i, event in enumerate(events):  # from inside the step, the rest of it
        rest = await app.backend.read_events(after=event.id, limit=10)
        assert [e.id for e in rest.events] == [e.id for e in events[i + 1 :]]
    resumed = app.events(after=events[1].id)
    assert [(await anext(resumed)).id for _ in range(n - 2)] == [e.id for e in events[2:]]
    return events


async def test_the_events_of_one_call_read_in_pages_and_resume_inside(app: Conveyor) -> None:
    """An enqueue of five jobs, then a claim of them, each write five events
    in one step (on Redis one stream entry, on SQLite one row for the
    enqueue): read in pages, and resumed after any of them, each once."""

    @app.task
    async def work(n: int) -> None: ...

    start = await app.backend.last_event_id()
    handles = await app.enqueue_many([work.call(n) for n in range(5)])
    enqueued = await _read_in_pages(app, start, 5)
    assert [e.kind for e in enqueued] == [EventKind.ENQUEUED] * 5
    assert [e.job_id for e in enqueued] == [h.id for h in handles]
    assert {(e.queue, e.task, e.state) for e in enqueued} == {
        ("default", work.name, JobState.WAITING)
    }
    assert all(e.run_at_ms == e.at_ms for e in enqueued)  # ready at once
    claimed = await claim(app, limit=5)
    assert len(claimed) == 5
    actives = await _read_in_pages(app, enqueued[-1].id, 5)
    assert {e.kind for e in actives} == {EventKind.ACTIVE}
    assert sorted(e.job_id for e in actives) == sorted(h.id for h in handles)


async def test_a_wait_after_an_older_id_returns_at_once(app: Conveyor) -> None:
    """An event written between a reader's last page and its wait must end
    the wait at once, not after the wait's whole timeout."""

    @app.task
    async def work() -> None: ...

    before = await app.backend.last_event_id()
    await work.enqueue()  # committed before the wait below begins
    started = time.monotonic()
    await asyncio.wait_for(app.backend.wait_for_events(after=before, timeout_s=30), 10)
    assert time.monotonic() - started < 2


async def test_a_subscriber_left_behind_by_trimming_gets_a_gap_first(store_url: str) -> None:
    app = Conveyor(store_url, events=EventSettings(max_count=10))

    @app.task
    async def work(n: int) -> None: ...

    async with app:
        await work.enqueue(0)
        first = await app.backend.last_event_id()
        assert first is not None
        # Redis trims whole stream nodes (100 entries or 4 kB by default), SQLite
        # whole rows (one per enqueue call): go well past one of each.
        for start in range(1, 400, 100):
            await app.enqueue_many([work.call(n) for n in range(start, start + 100)])
        page = await app.backend.read_events(after=first, limit=5)
        assert page.gap
        behind = app.events(after=first)
        marker = await anext(behind)
        assert marker.kind is EventKind.GAP
        after_gap = await anext(behind)
        assert after_gap.kind is EventKind.ENQUEUED
        kept = await _after_all(app)
        assert 10 <= len(kept) < 401


async def test_events_past_their_age_are_dropped(store_url: str) -> None:
    app = Conveyor(store_url, events=EventSettings(max_age_s=0.05))

    @app.task
    async def work() -> None: ...

    async with app:
        first = await work.enqueue()
        second = await work.enqueue()
        last = await work.enqueue()
        everything = await _after_all(app)
        assert [e.job_id for e in everything] == [first.id, second.id, last.id]
        start = everything[0].id

        async def aged() -> bool:
            await app.backend.trim_history()
            kept = await _after_all(app)
            return len(kept) <= 1 and all(e.job_id == last.id for e in kept)

        await eventually(aged)  # SQLite keeps the newest: its ids never come back
        behind = app.events(after=start)
        newer = await work.enqueue()
        assert (await anext(behind)).kind is EventKind.GAP
        after_gap = await anext(behind)
        if after_gap.job_id == last.id:  # SQLite's newest was kept
            after_gap = await anext(behind)
        assert after_gap.job_id == newer.id


async def _after_all(app: Conveyor) -> list[JobEvent]:
    page = await app.backend.read_events(after=None, limit=1000)
    return page.events


async def test_an_app_with_events_off_writes_none(store_url: str) -> None:
    app = Conveyor(store_url, events=False)

    @app.task
    async def work() -> None: ...

    async with app:
        start = await app.backend.last_event_id()
        handle = await work.enqueue()
        await app.cancel(handle.id)
        assert await app.backend.last_event_id() == start


async def test_a_schedule_tick_writes_tick(app: Conveyor) -> None:
    @app.task
    async def digest() -> None: ...

    await app.schedules.add(digest, every=60, id="digest")
    start = await app.backend.last_event_id()
    app.clock.advance(61)
    assert await app.schedules.fire_due() == 1
    events = await _after(app, start)
    (tick,) = [e for e in events if e.kind is EventKind.TICK]
    assert tick.schedule == "digest" and tick.job_id.startswith("digest@")
    assert _kinds(events, tick.job_id) == ["enqueued", "tick"]


async def test_wait_and_result_follow_the_events(app: Conveyor) -> None:
    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(retries=0)
    async def boom() -> None:
        raise ValueError("no")

    worker = Worker(app, WorkerSettings(concurrency=2))
    running = asyncio.create_task(worker.run())
    try:
        handle = await add.enqueue(2, 3)
        assert await handle.result(10) == 5
        assert (await handle.wait(1)).state is JobState.COMPLETED  # finished: at once
        failing = await boom.enqueue()
        with pytest.raises(JobFailed, match="ValueError: no") as raised:
            await failing.result(10)
        assert raised.value.state == "failed"
        later = await add.configure(delay=3600).enqueue(1, 1)
        with pytest.raises(JobTimeout, match="still delayed"):
            await later.wait(0.3)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)


async def test_bad_subscriptions_name_their_field(app: Conveyor) -> None:
    with pytest.raises(InvalidInput, match="kinds"):
        app.events(kinds=["finished"])
    with pytest.raises(InvalidInput, match="after"):
        await app.events(after="not-an-id").start()
    with pytest.raises(InvalidInput, match="queue"):
        app.events(queue="")


async def test_wait_without_events_reads_the_job_instead(store_url: str) -> None:
    app = Conveyor(store_url, events=False)

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    async with app:
        worker = Worker(app, WorkerSettings(concurrency=1))
        running = asyncio.create_task(worker.run())
        try:
            handle = await add.enqueue(1, 2)
            assert await handle.result(10) == 3  # read at a 50 ms pace: no event comes
        finally:
            worker.stop()
            await asyncio.wait_for(running, 15)
