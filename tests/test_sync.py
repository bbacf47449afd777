"""The blocking facade, used from plain synchronous code as a Flask view would."""

from __future__ import annotations

import threading

import pytest

from conveyor import Conveyor, InvalidArguments, JobNotFound, SyncConveyor, flow

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
