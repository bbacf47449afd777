"""Dedup keys: throttle (one job per key per window) and debounce (the last of
a burst runs), timed by the store's clock, alone and within one bulk enqueue."""

from __future__ import annotations

import asyncio

import pytest

from conveyor import Conveyor, InvalidInput, JobNotFound, JobState

from .conftest import claim


async def test_throttle_adds_nothing_within_the_window_and_names_the_job(app: Conveyor) -> None:
    @app.task
    async def notify(n: int) -> None: ...

    first = await notify.configure(dedup_key="user:42", dedup_ttl=60).enqueue(1)
    app.clock.advance(59)
    again = await notify.configure(dedup_key="user:42", dedup_ttl=60).enqueue(2)
    other = await notify.configure(dedup_key="user:43", dedup_ttl=60).enqueue(3)
    assert first.created and not again.created and other.created
    assert again.id == first.id != other.id
    assert (await again.get()).args == {"n": 1}
    assert (await app.counts("default"))[JobState.WAITING] == 2


async def test_throttle_window_closed_adds_a_new_job_whatever_the_first_became(
    app: Conveyor,
) -> None:
    @app.task
    async def notify(n: int) -> None: ...

    throttled = notify.configure(dedup_key="user:42", dedup_ttl=60)
    first = await throttled.enqueue(1)
    (taken,) = await claim(app)  # any state counts: here active
    assert taken.job.id == first.id
    assert not (await throttled.enqueue(2)).created
    app.clock.advance(60)
    second = await throttled.enqueue(3)
    assert second.created and second.id != first.id
    assert (await second.get()).state == JobState.WAITING
    assert (await throttled.enqueue(4)).id == second.id  # a new window


async def test_throttle_window_outlives_a_removed_job(app: Conveyor) -> None:
    @app.task
    async def notify(n: int) -> None: ...

    throttled = notify.configure(dedup_key="user:42", dedup_ttl=60)
    first = await throttled.enqueue(1)
    assert await app.remove(first.id)
    again = await throttled.enqueue(2)  # the window is a time span, not a job's life
    assert not again.created and again.id == first.id
    assert (await app.counts("default"))[JobState.WAITING] == 0
    app.clock.advance(61)
    assert (await throttled.enqueue(3)).created


async def test_debounce_burst_leaves_only_the_last_job_which_runs_after_the_pause(
    app: Conveyor,
) -> None:
    @app.task
    async def reindex(n: int) -> None: ...

    debounced = reindex.configure(dedup_key="reindex:7", debounce=5)
    handles = []
    for n in range(3):
        handles.append(await debounced.enqueue(n))
        app.clock.advance(2)  # each within the previous one's pause
    assert all(h.created for h in handles)
    for gone in handles[:2]:
        with pytest.raises(JobNotFound):
            await gone.get()
    last = await handles[2].get()
    assert (last.state, last.args) == (JobState.DELAYED, {"n": 2})
    assert (await app.counts("default"))[JobState.DELAYED] == 1
    assert await claim(app) == []  # 2 s of its 5 s pause have passed
    app.clock.advance(3.1)
    (taken,) = await claim(app)
    assert taken.job.id == handles[2].id


async def test_debounce_after_the_previous_job_started_adds_beside_it(app: Conveyor) -> None:
    @app.task
    async def reindex(n: int) -> None: ...

    debounced = reindex.configure(dedup_key="reindex:7", debounce=5)
    first = await debounced.enqueue(1)
    app.clock.advance(5)
    (taken,) = await claim(app)
    assert taken.job.id == first.id
    second = await debounced.enqueue(2)
    assert second.created and second.id != first.id
    assert (await first.get()).state == JobState.ACTIVE
    assert (await second.get()).state == JobState.DELAYED
    third = await debounced.enqueue(3)  # the second has not started: replaced
    with pytest.raises(JobNotFound):
        await second.get()
    assert (await third.get()).state == JobState.DELAYED


async def test_debounce_replaces_a_job_of_another_queue(app: Conveyor) -> None:
    @app.task
    async def reindex(n: int) -> None: ...

    first = await reindex.configure(dedup_key="k", debounce=5, queue="a").enqueue(1)
    second = await reindex.configure(dedup_key="k", debounce=5, queue="b").enqueue(2)
    with pytest.raises(JobNotFound):
        await first.get()
    assert (await app.counts("a"))[JobState.DELAYED] == 0
    assert (await app.counts("b"))[JobState.DELAYED] == 1
    app.clock.advance(6)
    assert await claim(app, ["a"]) == []
    assert [c.job.id for c in await claim(app, ["b"])] == [second.id]


async def test_a_batch_sharing_keys_behaves_as_enqueued_in_order(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    throttled = work.configure(dedup_key="t", dedup_ttl=60)
    debounced = work.configure(dedup_key="d", debounce=5)
    handles = await app.enqueue_many(
        [
            throttled.call(0),
            debounced.call(1),
            throttled.call(2),
            work.call(3),
            debounced.call(4),
            debounced.call(5),
        ]
    )
    assert [h.created for h in handles] == [True, True, False, True, True, True]
    assert handles[2].id == handles[0].id
    for gone in (handles[1], handles[4]):
        with pytest.raises(JobNotFound):
            await gone.get()
    assert (await handles[5].get()).args == {"n": 5}
    counts = await app.counts("default")
    assert (counts[JobState.WAITING], counts[JobState.DELAYED]) == (2, 1)
    # and a later enqueue sees what the batch left
    assert (await throttled.enqueue(6)).id == handles[0].id
    replacing = await debounced.enqueue(7)
    with pytest.raises(JobNotFound):
        await handles[5].get()
    assert (await replacing.get()).state == JobState.DELAYED


async def test_an_existing_job_id_wins_over_the_dedup_key(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    first = await work.configure(job_id="j", dedup_key="d", debounce=5).enqueue(1)
    again = await work.configure(job_id="j", dedup_key="d", debounce=5).enqueue(2)
    assert first.created and not again.created and again.id == "j"
    assert (await app.get_job("j")).args == {"n": 1}  # not replaced by its own id
    throttled = await work.configure(job_id="j", dedup_key="t", dedup_ttl=60).enqueue(3)
    assert not throttled.created and throttled.id == "j"
    fresh = await work.configure(dedup_key="t", dedup_ttl=60).enqueue(4)
    assert fresh.created  # the existing id opened no window


async def test_concurrent_debounces_leave_one_pending_job(app: Conveyor) -> None:
    @app.task
    async def reindex(n: int) -> None: ...

    debounced = reindex.configure(dedup_key="reindex:7", debounce=5)
    handles = await asyncio.gather(*(debounced.enqueue(n) for n in range(20)))
    # On Redis an enqueue that raced another may come back not created, naming
    # the job that replaced it; on SQLite the writer takes them one by one.
    assert any(h.created for h in handles)
    assert (await app.counts("default"))[JobState.DELAYED] == 1
    batches = await asyncio.gather(
        *(app.enqueue_many([debounced.call(n), debounced.call(n)]) for n in range(5))
    )  # a batch whose peek went stale is tried again
    assert (await app.counts("default"))[JobState.DELAYED] == 1
    app.clock.advance(5)
    (taken,) = await claim(app)
    assert taken.job.id in {h.id for batch in batches for h in batch}


async def test_a_throttle_keys_owner_until_released_or_its_window_ends(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    throttled = work.configure(dedup_key="sync:42", dedup_ttl=60)
    first = await throttled.enqueue(1)
    assert await app.dedup_key_owner("sync:42") == first.id
    assert not (await throttled.enqueue(2)).created  # the window is open
    assert await app.release_dedup_key("sync:42")
    assert await app.dedup_key_owner("sync:42") is None
    assert not await app.release_dedup_key("sync:42")  # free already
    second = await throttled.enqueue(3)
    assert second.created and second.id != first.id
    assert await app.dedup_key_owner("sync:42") == second.id
    app.clock.advance(61)  # the window ends on its own
    assert await app.dedup_key_owner("sync:42") is None
    assert not await app.release_dedup_key("sync:42")
    assert (await app.get_job(first.id)).state is JobState.WAITING  # jobs are not touched


async def test_releasing_a_debounce_key_keeps_its_job_and_starts_anew(app: Conveyor) -> None:
    @app.task
    async def work(n: int) -> None: ...

    debounced = work.configure(dedup_key="search:7", debounce=30)
    first = await debounced.enqueue(1)
    assert await app.dedup_key_owner("search:7") == first.id
    assert await app.release_dedup_key("search:7")
    second = await debounced.enqueue(2)  # would have replaced the first job
    assert (await app.get_job(first.id)).state is JobState.DELAYED
    assert (await app.get_job(second.id)).state is JobState.DELAYED
    assert await app.dedup_key_owner("search:7") == second.id
    assert await app.dedup_key_owner("never-used") is None
    with pytest.raises(InvalidInput) as bad:
        await app.release_dedup_key("")
    assert bad.value.field == "dedup_key"
