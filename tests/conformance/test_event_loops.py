"""One app on one event loop after another: each new loop reconnects by itself.

These are sync tests that make their own loops (pytest-asyncio would run an
async test on a loop of its own): ``asyncio.run`` calls, or loops from
``new_event_loop`` each closed before the next starts, as a script, a
notebook or pytest's loop per test would use a module-level app. Whatever
the old loop held is dropped without it, and the checks include that no
warning comes of it (an unclosed socket, a coroutine never awaited).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import warnings
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from conveyor import Clock, ConfigurationError, Conveyor, JobState, Retention, SyncConveyor

from .conftest import claim

T = TypeVar("T")
KEEP = Retention()


@contextlib.contextmanager
def no_warnings() -> Iterator[None]:
    """Fail if anything in the block, or the garbage it leaves, warns."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()  # finalizers of whatever the old loops left run now, in here
    assert [str(w.message) for w in caught] == []


def on_fresh_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a new loop and close it bare (no task cancelling, no async
    generator or executor shutdown, unlike ``asyncio.run``)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def make_app(store_url: str) -> Conveyor:
    app = Conveyor(store_url, clock=Clock())

    @app.task
    async def work(n: int) -> None: ...

    return app


def test_one_app_serves_one_asyncio_run_after_another(store_url: str) -> None:
    app = make_app(store_url)
    work = app.get_task("work")
    with no_warnings():
        first = asyncio.run(work.enqueue(1))
        second = asyncio.run(work.enqueue(2))
        assert asyncio.run(app.get_job(first.id)).args == {"n": 1}
        assert asyncio.run(app.counts("default"))[JobState.WAITING] == 2

        async def claim_and_complete() -> bool:
            (claimed,) = await claim(app, limit=1)
            assert claimed.job.id == first.id
            return await app.backend.complete(
                job_id=first.id, token=claimed.token, result=b"1", retention=KEEP
            )

        assert asyncio.run(claim_and_complete())
        assert asyncio.run(app.get_job(first.id)).state == "completed"
        counts = asyncio.run(app.counts("default"))
        assert (counts[JobState.COMPLETED], counts[JobState.WAITING]) == (1, 1)
        assert asyncio.run(app.get_job(second.id)).state == "waiting"
        asyncio.run(app.close())


def test_a_lease_taken_on_one_loop_is_completed_on_the_next(store_url: str) -> None:
    app = make_app(store_url)
    work = app.get_task("work")
    with no_warnings():
        handle = on_fresh_loop(work.enqueue(7))
        (claimed,) = on_fresh_loop(claim(app))
        done = app.backend.complete(
            job_id=handle.id, token=claimed.token, result=b"7", retention=KEEP
        )
        assert on_fresh_loop(done)
        job = on_fresh_loop(app.get_job(handle.id))
        assert (job.state, job.result) == ("completed", 7)
        assert on_fresh_loop(app.counts("default"))[JobState.COMPLETED] == 1
        on_fresh_loop(app.close())


def test_an_idle_wait_on_a_new_loop_wakes_at_an_enqueue(store_url: str) -> None:
    """The wake-up path (SQLite's event, Redis's blocking client) is the new loop's."""
    app = make_app(store_url)
    work = app.get_task("work")

    async def wait_while_enqueueing() -> float:
        started = time.monotonic()
        waiting = asyncio.create_task(app.backend.wait_for_jobs(queues=["default"], timeout_s=30.0))
        await asyncio.sleep(0)  # let the wait begin before the job comes
        await work.enqueue(1)
        await asyncio.wait_for(waiting, 10.0)
        return time.monotonic() - started

    with no_warnings():
        on_fresh_loop(app.backend.wait_for_jobs(queues=["default"], timeout_s=0.01))
        assert on_fresh_loop(wait_while_enqueueing()) < 10.0
        (claimed,) = on_fresh_loop(claim(app))
        assert on_fresh_loop(app.get_job(claimed.job.id)).state == "active"
        on_fresh_loop(app.close())


def test_a_loop_closed_in_the_middle_of_a_call_leaves_the_next_loop_working(
    store_url: str,
) -> None:
    """The enqueue started on the first loop never ends: that loop stops after
    one turn and is closed (whether its write went out is unknown, as for a
    cancelled call). The next loop's calls must not wait on what it left."""
    app = make_app(store_url)
    work = app.get_task("work")
    with warnings.catch_warnings():
        # A task left pending on a closed loop is the caller's to answer for:
        # asyncio logs it, its coroutines (redis-py's too) warn or fail when
        # collected. Collect them here, not during a later test.
        warnings.simplefilter("ignore")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(app.connect())
        abandoned = loop.create_task(work.enqueue(1))
        loop.call_soon(loop.stop)  # after the enqueue's first step, before the next turn
        loop.run_forever()
        loop.close()
        assert not abandoned.done()
        with contextlib.suppress(RuntimeError):  # redis-py's cleanup wants a loop
            abandoned.get_coro().close()
        del abandoned
        gc.collect()
    with no_warnings():
        handle = on_fresh_loop(asyncio.wait_for(work.enqueue(2), 10.0))
        assert on_fresh_loop(app.get_job(handle.id)).state == "waiting"
        on_fresh_loop(app.close())


def test_an_app_busy_on_a_loop_in_another_thread_refuses_another_loop(store_url: str) -> None:
    """Two loops at once would pull connections from under each other: one at
    a time. Once the other loop is done with it, any loop may have it."""
    app = make_app(store_url)
    work = app.get_task("work")
    client = SyncConveyor(app)  # its loop runs in a thread of its own
    try:
        handle = client.enqueue(work, 1)
        with pytest.raises(ConfigurationError, match="one event loop at a time"):
            asyncio.run(app.get_job(handle.id))
        assert client.get_job(handle.id).state == "waiting"  # the facade's loop keeps it
    finally:
        client.close()
    with no_warnings():
        assert asyncio.run(app.get_job(handle.id)).state == "waiting"
        asyncio.run(app.close())


def test_an_app_closed_on_a_loop_that_runs_on_may_be_used_from_another(store_url: str) -> None:
    app = make_app(store_url)
    work = app.get_task("work")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def there(coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30.0)

    try:
        handle = there(work.enqueue(1))
        with pytest.raises(ConfigurationError, match="close the app there first"):
            asyncio.run(work.enqueue(2))
        there(app.close())
        with no_warnings():
            assert asyncio.run(app.get_job(handle.id)).state == "waiting"
            assert asyncio.run(app.counts("default"))[JobState.WAITING] == 1
            asyncio.run(app.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30.0)
        loop.close()
