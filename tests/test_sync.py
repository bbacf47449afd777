"""The blocking facade, used from plain synchronous code as a Flask view would."""

from __future__ import annotations

import inspect
import threading

import pytest

from conveyor import (
    Conveyor,
    InvalidArguments,
    JobNotFound,
    JobState,
    Limits,
    Rate,
    SyncConveyor,
    flow,
)
from conveyor.schedules import Schedules
from conveyor.sync import SyncSchedules

from .conftest import db_digest


def test_sync_facade_enqueues_and_reads_without_an_event_loop(sqlite_url: str) -> None:
    app = Conveyor(sqlite_url)

    @app.task(queue="mail")
    async def send(to: str, n: int = 1) -> None: ...

    with SyncConveyor(app) as client:
        handle = client.enqueue(send, "a@b.c", n=2)
        again = client.enqueue(send.configure(job_id="fixed", delay=60), "x@y.z")
        job = client.get_job(handle.id)
        assert (job.state, job.queue, job.args) == ("waiting", "mail", {"to": "a@b.c", "n": 2})
        assert client.get_job(again.id).state == "delayed"
        assert not client.enqueue(send.configure(job_id="fixed"), "x@y.z").created
        assert len(client.enqueue_many([send.call(f"{i}@b.c") for i in range(10)])) == 10
        parent = client.add_flow(flow(send.call("boss@b.c"), children=[send.call("c@b.c")]))
        assert client.get_job(parent.id).state == "waiting_children"
        assert client.cancel(handle.id)
        assert client.get_job(handle.id).state == "cancelled"
        with pytest.raises(JobNotFound):
            client.get_job("missing")
        before = db_digest(sqlite_url.removeprefix("sqlite:///"))
        with pytest.raises(InvalidArguments) as caught:
            client.enqueue(send, 5)  # type: ignore[arg-type]
        assert caught.value.field == "to"
        assert db_digest(sqlite_url.removeprefix("sqlite:///")) == before
    assert not any(t.name == "conveyor-sync" for t in threading.enumerate())


def coroutine_methods(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("async_cls", "sync_cls", "without", "written_out", "known"),
    [
        # connect: the facade connects when it is made; close also stops its loop.
        # wait and result are written out: their call lasts their own timeout too.
        (Conveyor, SyncConveyor, {"connect"}, {"close", "wait", "result"}, {"counts", "clean"}),
        # save_declared and fire_due are what workers run, not a producer's calls.
        (Schedules, SyncSchedules, {"save_declared", "fire_due"}, set(), {"add", "list"}),
    ],
)
def test_every_public_coroutine_method_has_a_blocking_twin(
    async_cls: type, sync_cls: type, without: set[str], written_out: set[str], known: set[str]
) -> None:
    names = coroutine_methods(async_cls) - without
    assert known <= names  # inspect does find them
    missing = sorted(name for name in names if not hasattr(sync_cls, name))
    assert not missing, f"{sync_cls.__name__} has no blocking twin of {missing}"
    for name in names:
        twin = getattr(sync_cls, name)
        assert not inspect.iscoroutinefunction(twin), name
        if name not in written_out:  # made from the async method itself, not a copy
            assert twin.__wrapped__ is getattr(async_cls, name), name


def test_twins_read_and_manage_a_real_store(sqlite_url: str) -> None:
    app = Conveyor(sqlite_url)

    @app.task(queue="mail")
    async def send(to: str) -> None: ...

    with SyncConveyor(app, timeout=10) as client:
        first = client.enqueue(send, "a@b.c")
        second = client.enqueue(send, "c@d.e")
        client.enqueue(send.configure(delay=3600), "later@b.c")
        counts = client.counts("mail")
        assert (counts[JobState.WAITING], counts[JobState.DELAYED]) == (2, 1)
        assert [job.id for job in client.list_jobs("waiting", queue="mail")] == [
            first.id,
            second.id,
        ]

        client.pause("mail")
        assert [(q.name, q.paused) for q in client.queues()] == [("mail", True)]
        client.resume("mail")
        assert not client.queues()[0].paused

        client.set_limits("mail", rate="100/m", max_active=2)
        assert client.limits("mail") == {None: Limits(max_active=2, rate=Rate(100, 60_000))}
        assert client.cancel(first.id)
        assert client.retry(first.id)
        assert client.get_job(first.id).state == "waiting"
        assert client.update_args(second.id, "x@y.z")
        assert client.change_priority(second.id, 9)
        assert client.change_delay(second.id, 60)
        changed = client.get_job(second.id)
        assert (changed.args, changed.priority, changed.state) == ({"to": "x@y.z"}, 9, "delayed")
        assert client.remove(second.id)
        assert client.counts("mail")[JobState.WAITING] == 1
        throttled = client.enqueue(send.configure(dedup_key="d", dedup_ttl=60), "t@b.c")
        assert client.dedup_key_owner("d") == throttled.id
        assert client.release_dedup_key("d") and client.dedup_key_owner("d") is None
        (parent,) = client.add_flows([flow(send.call("p@b.c"), [send.call("k@b.c")])])
        assert [c.job.args for c in client.get_flow(parent.id).children] == [{"to": "k@b.c"}]
        client.enqueue(send.configure(queue="spam"), "s@b.c")
        assert client.drain("spam") == 1
        assert client.obliterate("spam") == 0  # emptied: only the queue itself goes
        assert "spam" not in [q.name for q in client.queues()]
        assert client.workers() == []

        client.schedules.add(send, every=60, id="ping", args=["p@b.c"])
        assert client.schedules.pause("ping").paused
        assert [info.schedule.id for info in client.schedules.list()] == ["ping"]
        assert client.schedules.remove("ping")
        assert client.schedules.list() == []
