"""Changing a job that has not started: change_delay, change_priority and
update_args, each all or nothing, with its event, and racing a claim."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from conveyor import Conveyor, InvalidInput, JobNotFound, JobState, Retention
from conveyor.errors import InvalidArguments
from conveyor.events import JobEvent

from ..conftest import store_digest
from .conftest import claim

KEEP = Retention()


async def _events_since(app: Conveyor, start: str | None, job_id: str) -> list[JobEvent]:
    page = await app.backend.read_events(after=start, limit=1000)
    return [event for event in page.events if event.job_id == job_id]


async def _claimed_ids(app: Conveyor, limit: int = 10) -> list[str]:
    return [c.job.id for c in await claim(app, limit=limit)]


async def test_change_delay_moves_a_waiting_job_later_and_a_delayed_one_to_now(
    app: Conveyor,
) -> None:
    @app.task
    async def work() -> None: ...

    start = await app.backend.last_event_id()
    waiting = await work.enqueue()
    delayed = await work.configure(delay=60).enqueue()
    assert await app.change_delay(waiting.id, 30)
    assert await app.change_delay(delayed.id, 0)
    job = await app.get_job(waiting.id)
    assert job.state is JobState.DELAYED
    assert abs(job.run_at.timestamp() * 1000 - (app.clock.now_ms() + 30_000)) < 2000
    assert (await app.get_job(delayed.id)).state is JobState.WAITING
    assert await _claimed_ids(app) == [delayed.id]  # the other waits for its new time
    app.clock.advance(31)
    assert await _claimed_ids(app) == [waiting.id]
    moved = await _events_since(app, start, waiting.id)
    assert [e.kind.value for e in moved][:2] == ["enqueued", "delayed"]
    assert moved[1].state is JobState.DELAYED and moved[1].run_at_ms == int(
        job.run_at.timestamp() * 1000
    )
    promoted = await _events_since(app, start, delayed.id)
    assert [e.kind.value for e in promoted][:2] == ["enqueued", "waiting"]


async def test_change_delay_of_a_delayed_job_is_a_changed_event_at_the_new_time(
    app: Conveyor,
) -> None:
    @app.task
    async def work() -> None: ...

    handle = await work.configure(delay=60).enqueue()
    start = await app.backend.last_event_id()
    at = datetime.now(UTC) + timedelta(seconds=5) + timedelta(milliseconds=app.clock.offset_ms)
    assert await app.change_delay(handle.id, run_at=at)
    (event,) = await _events_since(app, start, handle.id)
    assert event.kind.value == "changed" and event.state is JobState.DELAYED
    assert event.run_at_ms == (await app.get_job(handle.id)).run_at.timestamp() * 1000
    assert await claim(app) == []
    app.clock.advance(6)  # due at the new time, well before the old one
    assert await _claimed_ids(app) == [handle.id]


async def test_a_started_or_finished_job_is_not_changed(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    active = await work.enqueue(1)
    done = await work.enqueue(2)
    claimed = {c.job.id: c for c in await claim(app)}
    await app.backend.complete(
        job_id=done.id, token=claimed[done.id].token, result=b"null", retention=KEEP
    )
    before = {h.id: await app.get_job(h.id) for h in (active, done)}
    start = await app.backend.last_event_id()
    for handle in (active, done):
        assert not await app.change_delay(handle.id, 10)
        assert not await app.change_priority(handle.id, 50)
        assert not await app.update_args(handle.id, 99)
        assert await app.get_job(handle.id) == before[handle.id]
    assert (await app.backend.read_events(after=start, limit=10)).events == []


async def test_an_unknown_job_raises_and_changes_nothing(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    await work.enqueue(1)
    before = None if "cluster" in app.url else store_digest(app.url)
    for change in (
        app.change_delay("nope", 10),
        app.change_priority("nope", 5),
        app.update_args("nope", 1),
    ):
        with pytest.raises(JobNotFound):
            await change
    if before is not None:
        assert store_digest(app.url) == before


async def test_change_priority_re_sorts_waiting_and_delayed_jobs(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    first, second, third = [await work.enqueue(n) for n in range(3)]
    later = await work.configure(delay=5).enqueue(3)
    assert await app.change_priority(third.id, 10)
    assert await app.change_priority(later.id, 20)
    assert (await app.get_job(third.id)).priority == 10
    app.clock.advance(6)
    assert await _claimed_ids(app, limit=4) == [later.id, third.id, first.id, second.id]


async def test_change_priority_with_lifo_puts_a_job_first_of_its_priority(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = [await work.enqueue(n) for n in range(3)]
    newest_first = await work.configure(lifo=True).enqueue(3)
    assert await app.change_priority(handles[2].id, 0, lifo=True)  # the newest LIFO job now
    assert await app.change_priority(newest_first.id, 0, lifo=False)  # by when it was ready
    order = await _claimed_ids(app, limit=4)
    assert order == [handles[2].id, handles[0].id, handles[1].id, newest_first.id]


async def test_change_priority_re_sorts_a_job_within_its_group(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    grouped = work.configure(group="tenant-a")
    first, second = await grouped.enqueue(1), await grouped.enqueue(2)
    assert await app.change_priority(second.id, 5)
    assert await _claimed_ids(app, limit=1) == [second.id]
    assert await _claimed_ids(app, limit=1) == [first.id]


async def test_a_change_keeps_its_groups_turn(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    first = await work.configure(group="a").enqueue(1)  # a joined the rotation first
    await work.configure(group="b").enqueue(2)
    assert await app.change_priority(first.id, 5)
    assert await app.update_args(first.id, 3)
    assert await _claimed_ids(app, limit=1) == [first.id]  # a's turn is still first


async def test_update_args_replaces_the_arguments_a_worker_gets(app: Conveyor) -> None:
    @app.task
    async def work(n: int, label: str = "") -> None: ...

    handle = await work.configure(delay=5).enqueue(1)
    start = await app.backend.last_event_id()
    assert await app.update_args(handle.id, 2, label="two")
    assert (await app.get_job(handle.id)).args == {"n": 2, "label": "two"}
    (event,) = await _events_since(app, start, handle.id)
    assert event.kind.value == "changed" and event.state is JobState.DELAYED
    app.clock.advance(6)
    (claimed,) = await claim(app)
    assert msgspec.json.decode(claimed.payload) == {"n": 2, "label": "two"}


async def test_update_args_checks_the_signature_and_changes_nothing(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handle = await work.enqueue(1)
    before = await app.get_job(handle.id)
    with pytest.raises(InvalidArguments) as wrong:
        await app.update_args(handle.id, "one")
    assert wrong.value.field == "n"
    with pytest.raises(InvalidArguments):
        await app.update_args(handle.id, 1, m=2)
    with pytest.raises(InvalidInput) as past:
        await app.change_delay(handle.id, run_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert past.value.field == "run_at"
    with pytest.raises(InvalidInput) as both:
        await app.change_delay(handle.id)
    assert both.value.field == "delay"
    with pytest.raises(InvalidInput):
        await app.change_priority(handle.id, 101)
    assert await app.get_job(handle.id) == before


async def test_a_parent_waiting_for_children_takes_priority_and_args_not_a_delay(
    app: Conveyor,
) -> None:
    from conveyor.flow import flow

    @app.task
    async def child() -> None: ...

    @app.task
    async def parent(n: int) -> None: ...

    root = await app.add_flow(flow(parent.call(1), [child.call()]))
    assert (await app.get_job(root.id)).state is JobState.WAITING_CHILDREN
    assert not await app.change_delay(root.id, 10)
    assert await app.change_priority(root.id, 7)
    assert await app.update_args(root.id, 2)
    job = await app.get_job(root.id)
    assert (job.priority, job.args, job.state) == (7, {"n": 2}, JobState.WAITING_CHILDREN)


async def _interleaved(
    app: Conveyor, changes: list[Awaitable[bool]]
) -> tuple[dict[str, bytes], list[bool]]:
    """Run ``changes`` (the last job's first) and claims of five, one claim
    after every five changes, all at once: they meet part-way."""
    claims = [claim(app, limit=5) for _ in range(len(changes) // 5)]
    ops: list[Awaitable[Any]] = []
    for i, change in enumerate(reversed(changes)):
        ops.append(change)
        if i % 5 == 4:
            ops.append(claims.pop())
    done = await asyncio.gather(*ops)
    claimed = {c.job.id: c.payload for got in done if isinstance(got, list) for c in got}
    changed = [result for result in done if isinstance(result, bool)]
    return claimed, changed[::-1]


async def test_change_delay_racing_promotion_and_claim_is_one_or_the_other(
    app: Conveyor,
) -> None:
    @app.task
    async def work(n: int) -> None: ...

    due = [await work.configure(delay=1).enqueue(n) for n in range(40)]
    app.clock.advance(2)  # all due: the claims below promote them
    started = {c.job.id for c in await claim(app, limit=5)}  # these changes must fail
    later = [await work.configure(delay=600).enqueue(n) for n in range(5)]  # these succeed
    handles = due + later
    claimed, changed = await _interleaved(app, [app.change_delay(h.id, 60) for h in handles])
    claimed |= dict.fromkeys(started, b"")
    for handle, moved in zip(handles, changed, strict=True):
        job = await app.get_job(handle.id)
        if moved:
            assert handle.id not in claimed and job.state is JobState.DELAYED
        else:
            assert handle.id in claimed and job.state is JobState.ACTIVE
    assert not any(changed[:5]) and all(changed[-5:])
    counts = await app.counts("default")
    assert counts[JobState.DELAYED] == sum(changed)
    assert counts[JobState.ACTIVE] == len(claimed) == len(handles) - sum(changed)
    assert counts[JobState.WAITING] == 0


async def test_update_args_racing_a_claim_never_changes_a_started_run(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    handles = [await work.enqueue(n) for n in range(40)]
    started = {c.job.id: c.payload for c in await claim(app, limit=5)}  # these must fail
    updates = [app.update_args(h.id, 1000 + i) for i, h in enumerate(handles)]
    claimed, updated = await _interleaved(app, updates)
    claimed |= started
    assert not any(updated[:5])
    for i, (handle, changed) in enumerate(zip(handles, updated, strict=True)):
        stored = (await app.get_job(handle.id)).args["n"]
        assert stored == (1000 + i if changed else i)
        if handle.id in claimed:  # what the run got is what the store holds
            assert msgspec.json.decode(claimed[handle.id])["n"] == stored
        else:
            assert changed
