"""Flows: parents wait in ``waiting_children`` for their children, hear of
each child's outcome once (by the child's ``on_failure``), nest, and are
added whole or not at all; chains and batches are flows."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conveyor import (
    ChildOutcome,
    Conveyor,
    InvalidInput,
    JobNotFound,
    JobState,
    NonRetryable,
    Retention,
    Task,
    batch,
    chain,
    current_job,
    flow,
)
from conveyor.backends.values import ClaimedJob

from ..conftest import StartWorker
from .conftest import claim


def _work(app: Conveyor) -> Task[[str], Any]:
    @app.task(keep_completed=Retention())
    async def work(name: str) -> str:
        return name

    return work


async def finish(app: Conveyor, job: ClaimedJob, result: object = None, error: str = "") -> None:
    """Complete (or with ``error`` fail for good) a claimed job, as a worker does:
    the outcome write, then the parent told."""
    backend = app.backend
    if error:
        assert await backend.fail(
            job_id=job.job.id,
            token=job.token,
            error=error,
            traceback=None,
            retry_in_ms=None,
            retention=Retention(),
        )
    else:
        payload = b"null" if result is None else f'"{result}"'.encode()
        assert await backend.complete(
            job_id=job.job.id, token=job.token, result=payload, retention=Retention()
        )
    await backend.apply_outcomes(child_ids=[job.job.id], limit=1)


async def claim_by_name(app: Conveyor) -> dict[str, ClaimedJob]:
    return {c.job.args["name"]: c for c in await claim(app, limit=50)}


async def test_a_parent_waits_for_its_children_then_sees_their_results(app: Conveyor) -> None:
    work = _work(app)
    handle = await app.add_flow(
        flow(work.call("parent"), children=[work.call("a"), work.call("b")])
    )
    assert handle.created
    parent = await app.get_job(handle.id)
    assert parent.state == JobState.WAITING_CHILDREN and parent.children == 2
    assert (await app.counts("default"))[JobState.WAITING_CHILDREN] == 1
    assert [j.id for j in await app.list_jobs("waiting_children")] == [handle.id]
    running = await claim_by_name(app)
    assert sorted(running) == ["a", "b"]  # the parent is not claimable yet
    assert running["a"].job.parent_id == handle.id
    await finish(app, running["a"], "A")
    assert (await app.get_job(handle.id)).state == JobState.WAITING_CHILDREN
    await finish(app, running["b"], "B")
    (ran,) = await claim(app)
    assert ran.job.id == handle.id
    outcomes = {o.id: o for o in await app.backend.child_outcomes(parent_id=handle.id)}
    assert {o.result for o in outcomes.values()} == {"A", "B"}
    assert {o.task for o in outcomes.values()} == {"work"}
    assert all(o.state == JobState.COMPLETED and not o.ignored for o in outcomes.values())


async def test_a_failed_child_fails_its_parent_and_up_the_flow(app: Conveyor) -> None:
    work = _work(app)
    middle = flow(work.call("middle"), children=[work.call("leaf"), work.call("sibling")])
    root = await app.add_flow(flow(work.call("root"), children=[middle, work.call("other")]))
    running = await claim_by_name(app)
    assert sorted(running) == ["leaf", "other", "sibling"]
    await finish(app, running["leaf"], error="ValueError: bad page")
    middle_job = next(j for j in await app.list_jobs("failed") if j.args["name"] == "middle")
    leaf_id = running["leaf"].job.id
    assert middle_job.error == f"child {leaf_id} failed: ValueError: bad page"
    root_job = await app.get_job(root.id)
    assert root_job.state == JobState.FAILED
    assert root_job.error is not None and root_job.error.startswith(f"child {middle_job.id} failed")
    await finish(app, running["sibling"], "late")  # changes nothing more
    assert (await app.get_job(root.id)).state == JobState.FAILED
    assert await claim(app) == []


async def test_an_ignored_failure_lets_the_parent_run(app: Conveyor) -> None:
    work = _work(app)
    handle = await app.add_flow(
        flow(
            work.call("parent"),
            children=[
                flow(work.call("flaky"), on_failure="ignore"),
                work.call("solid"),
            ],
        )
    )
    running = await claim_by_name(app)
    await finish(app, running["flaky"], error="TimeoutError: upstream")
    await finish(app, running["solid"], "ok")
    (ran,) = await claim(app)
    assert ran.job.id == handle.id
    outcomes = {o.task + o.state: o for o in await app.backend.child_outcomes(parent_id=handle.id)}
    failed = outcomes["workfailed"]
    assert failed.ignored and failed.error == "TimeoutError: upstream"


async def test_a_deciding_parent_runs_with_the_failures(app: Conveyor) -> None:
    work = _work(app)
    handle = await app.add_flow(
        flow(
            work.call("parent"),
            children=[
                flow(work.call("x"), on_failure="decide"),
                flow(work.call("y"), on_failure="decide"),
            ],
        )
    )
    running = await claim_by_name(app)
    await finish(app, running["x"], error="KeyError: 'x'")
    assert (await app.get_job(handle.id)).state == JobState.WAITING_CHILDREN
    await finish(app, running["y"], "Y")
    (ran,) = await claim(app)
    outcomes = await app.backend.child_outcomes(parent_id=ran.job.id)
    assert sorted((o.state, o.ignored) for o in outcomes) == [
        (JobState.COMPLETED, False),
        (JobState.FAILED, False),
    ]


async def test_cancelling_or_removing_a_child_counts_as_its_failure(app: Conveyor) -> None:
    work = _work(app)
    strict = await app.add_flow(flow(work.call("strict"), children=[work.call("c1")]))
    lenient = await app.add_flow(
        flow(
            work.call("lenient"),
            children=[
                flow(work.call("c2"), on_failure="ignore"),
            ],
        )
    )
    c1 = next(j for j in await app.list_jobs("waiting") if j.args["name"] == "c1")
    c2 = next(j for j in await app.list_jobs("waiting") if j.args["name"] == "c2")
    assert await app.cancel(c1.id)
    strict_job = await app.get_job(strict.id)
    assert strict_job.state == JobState.FAILED
    assert strict_job.error == f"child {c1.id} cancelled: cancelled"
    assert await app.remove(c2.id)
    assert (await app.get_job(lenient.id)).state == JobState.WAITING
    (outcome,) = await app.backend.child_outcomes(parent_id=lenient.id)
    assert outcome.error == "removed" and outcome.ignored


async def test_a_child_that_stalls_out_fails_its_parent(app: Conveyor) -> None:
    work = _work(app)
    parent = await app.add_flow(flow(work.call("parent"), children=[work.call("doomed")]))
    await claim(app, lease_ms=1)
    app.clock.advance(1)
    result = await app.backend.reclaim_expired(max_stalls=0, limit=10)
    assert len(result.failed) == 1
    await app.backend.apply_outcomes(child_ids=None, limit=10)  # as every worker's chore does
    failed = await app.get_job(parent.id)
    assert failed.state == JobState.FAILED and failed.error is not None
    assert failed.error.endswith("failed: stalled")


async def test_a_flow_is_added_whole_or_not_at_all(app: Conveyor, store_url: str) -> None:
    work = _work(app)
    taken = work.configure(job_id="taken").call("taken")
    await app.enqueue_many([taken])
    before = await app.counts("default")
    handle = await app.add_flow(flow(work.call("parent"), children=[work.call("new"), taken]))
    assert not handle.created
    assert await app.counts("default") == before
    with pytest.raises(JobNotFound):
        await app.get_job(handle.id)


def _deduped(work: Task[[str], Any]) -> Any:
    return work.configure(dedup_key="k", dedup_ttl=5).call("c")


def _same_id(work: Task[[str], Any]) -> Any:
    return work.configure(job_id="same").call("x")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda w: flow(w.call("p")), "children"),
        (lambda w: flow(w.configure(delay=5).call("p"), children=[w.call("c")]), "delay"),
        (lambda w: flow(w.configure(ttl=5).call("p"), children=[w.call("c")]), "delay"),
        (lambda w: flow(w.call("p"), children=[_deduped(w)]), "dedup_key"),
        (lambda w: flow(_same_id(w), children=[_same_id(w)]), "job_id"),
        (lambda w: flow(w.call("p"), children=[w.call("c")], on_failure="explode"), "on_failure"),
        (lambda w: chain(w.call("only")), "then"),
        (lambda w: flow(w.call("p"), children=["not a job"]), "children"),
    ],
)
async def test_bad_flows_are_refused_and_store_nothing(
    app: Conveyor, build: Any, field: str
) -> None:
    work = _work(app)
    with pytest.raises(InvalidInput) as refused:
        await app.add_flow(build(work))
    assert refused.value.field == field
    assert sum((await app.counts("default")).values()) == 0


async def test_a_piped_step_needs_one_job_before_it(app: Conveyor) -> None:
    @app.task
    async def combine(previous: int, extra: int) -> int:
        return previous + extra

    _work(app)
    with pytest.raises(InvalidInput) as refused:
        await app.add_flow(
            flow(
                combine.pipe(1),
                children=[
                    app.tasks["work"].call("a"),
                    app.tasks["work"].call("b"),
                ],
            )
        )
    assert refused.value.field == "pipe"
    with pytest.raises(InvalidInput) as wrong:
        combine.pipe("one")  # type: ignore[arg-type]
    assert wrong.value.field == "extra"


async def test_chains_pass_each_result_on(app: Conveyor, start_worker: StartWorker) -> None:
    @app.task
    async def fetch(url: str) -> str:
        return f"<{url}>"

    @app.task
    async def parse(page: str, strict: bool) -> list[str]:
        return [page, "strict" if strict else "loose"]

    @app.task
    async def store(parts: list[str]) -> str:
        assert current_job().children.succeeded == 1
        return "+".join(parts)

    handle = await app.add_flow(chain(fetch.call("x.org"), parse.pipe(strict=True), store.pipe()))
    await start_worker(concurrency=4)
    job = await handle.wait(timeout=20)
    assert job.state == JobState.COMPLETED and job.result == "<x.org>+strict"


async def test_a_chain_stops_at_a_failed_step(app: Conveyor, start_worker: StartWorker) -> None:
    ran: list[str] = []

    @app.task
    async def first() -> int:
        raise NonRetryable("nothing to fetch")

    @app.task
    async def second(value: int) -> int:
        ran.append("second")
        return value

    handle = await app.add_flow(chain(first.call(), second.pipe()))
    await start_worker(concurrency=2)
    job = await handle.wait(timeout=20)
    assert job.state == JobState.FAILED and job.error is not None
    assert "NonRetryable: nothing to fetch" in job.error and ran == []


async def test_a_batch_callback_counts_what_succeeded_and_failed(
    app: Conveyor, start_worker: StartWorker
) -> None:
    counted: list[tuple[int, int, list[Any]]] = []

    @app.task
    async def resize(n: int) -> int:
        if n % 3 == 0:
            raise NonRetryable(f"image {n} is corrupt")
        return n * 10

    @app.task
    async def report(user: str) -> str:
        children = current_job().children
        failed: list[ChildOutcome] = children.failed
        counted.append((children.succeeded, len(failed), sorted(children.results.values())))
        return f"{user}: {children.succeeded} ok, {len(failed)} failed"

    handle = await app.add_flow(
        batch([resize.call(n) for n in range(1, 8)], then=report.call("ann"))
    )
    await start_worker(concurrency=4)
    job = await handle.wait(timeout=20)
    assert job.state == JobState.COMPLETED and job.result == "ann: 5 ok, 2 failed"
    assert counted == [(5, 2, [10, 20, 40, 50, 70])]


async def test_flows_nest_several_levels(app: Conveyor, start_worker: StartWorker) -> None:
    order: list[str] = []

    @app.task
    async def step(name: str) -> str:
        order.append(name)
        below = sorted(str(r) for r in current_job().children.results.values())
        return name + "(" + ",".join(below) + ")"

    tree = flow(
        step.call("root"),
        children=[
            flow(step.call("left"), children=[step.call("l1"), step.call("l2")]),
            flow(
                step.call("right"),
                children=[
                    flow(step.call("deep"), children=[step.call("d1")]),
                ],
            ),
        ],
    )
    handle = await app.add_flow(tree)
    await start_worker(concurrency=3)
    job = await handle.wait(timeout=20)
    assert job.result == "root(left(l1(),l2()),right(deep(d1())))"
    assert order.index("d1") < order.index("deep") < order.index("right") < order.index("root")
    assert order[-1] == "root"


async def test_a_parents_id_taken_again_hears_only_its_own_children(app: Conveyor) -> None:
    work = _work(app)

    def tree(*children: str) -> Any:
        parent = work.configure(job_id="P").call("P")
        return flow(parent, children=[work.configure(job_id=c).call(c) for c in children])

    await app.add_flow(tree("old"))
    (old,) = await claim(app)  # the old child runs on while its parent goes away
    assert await app.remove("P")
    handle = await app.add_flow(tree("d1", "d2"))
    assert handle.created
    await finish(app, old, "stale")
    running = await claim_by_name(app)
    await finish(app, running["d1"], "D1")
    parent = await app.get_job("P")
    assert parent.state == JobState.WAITING_CHILDREN  # still waits for d2
    assert [o.id for o in await app.backend.child_outcomes(parent_id="P")] == ["d1"]
    await finish(app, running["d2"], "D2")
    assert (await app.get_job("P")).state == JobState.WAITING


async def test_a_flow_added_again_after_removal_runs(app: Conveyor) -> None:
    work = _work(app)

    def tree() -> Any:
        return flow(
            work.configure(job_id="P").call("P"), children=[work.configure(job_id="C").call("C")]
        )

    await app.add_flow(tree())
    assert await app.remove("P")
    assert await app.remove("C")
    assert (await app.add_flow(tree())).created
    (child,) = await claim(app)
    await finish(app, child, "done")
    assert (await app.get_job("P")).state == JobState.WAITING
    assert [o.result for o in await app.backend.child_outcomes(parent_id="P")] == ["done"]


async def test_a_debounce_never_deletes_a_flow_job_that_took_its_keys_id(app: Conveyor) -> None:
    work = _work(app)
    first = await work.configure(job_id="X", dedup_key="k", debounce=60).enqueue("x")
    assert await app.remove(first.id)
    await app.add_flow(flow(work.call("P"), children=[work.configure(job_id="X").call("X")]))
    await work.configure(dedup_key="k", debounce=60).enqueue("later")
    assert (await app.get_job("X")).state == JobState.WAITING


async def test_a_child_retried_by_hand_cannot_undo_its_failure(app: Conveyor) -> None:
    work = _work(app)
    parent = await app.add_flow(
        flow(work.call("P"), children=[work.configure(job_id="c").call("c")])
    )
    (child,) = await claim(app)
    assert await app.backend.fail(
        job_id="c",
        token=child.token,
        error="E",
        traceback=None,
        retry_in_ms=None,
        retention=Retention(),
    )
    assert await app.retry("c")  # before any worker told the parent
    (again,) = await claim(app)
    await finish(app, again, "fine now")
    job = await app.get_job(parent.id)
    assert (job.state, job.error) == (JobState.FAILED, "child c failed: E")


async def test_errors_reach_the_parent_whole(app: Conveyor) -> None:
    work = _work(app)
    parent = await app.add_flow(
        flow(
            work.call("P"),
            children=[
                flow(work.configure(job_id="z").call("z"), on_failure="decide"),
            ],
        )
    )
    (child,) = await claim(app)
    await finish(app, child, error="ValueError: a\x00b\nline two")
    (outcome,) = await app.backend.child_outcomes(parent_id=parent.id)
    assert outcome.error == "ValueError: a\x00b\nline two"


async def test_a_retried_parent_waits_again_for_unfinished_children(app: Conveyor) -> None:
    work = _work(app)
    parent = await app.add_flow(flow(work.call("P"), children=[work.call("a"), work.call("b")]))
    running = await claim_by_name(app)
    await finish(app, running["a"], error="boom")
    assert (await app.get_job(parent.id)).state == JobState.FAILED
    assert await app.retry(parent.id)
    assert (await app.get_job(parent.id)).state == JobState.WAITING_CHILDREN
    await finish(app, running["b"], "B")
    (ran,) = await claim(app)
    assert ran.job.id == parent.id


async def test_a_refused_flow_leaves_even_its_queues_out(app: Conveyor) -> None:
    work = _work(app)
    await app.enqueue_many([work.configure(job_id="taken").call("t")])
    before = [q.name for q in await app.queues()]
    await app.add_flow(
        flow(
            work.configure(queue="fresh").call("p"),
            children=[
                work.configure(job_id="taken").call("t"),
            ],
        )
    )
    assert [q.name for q in await app.queues()] == before


async def test_a_store_hiccup_reading_outcomes_does_not_fail_the_parent(
    app: Conveyor, start_worker: StartWorker
) -> None:
    from conveyor import BackendUnavailable

    work = _work(app)
    real = app.backend.child_outcomes
    hiccups = [1]

    async def flaky(**kwargs: Any) -> Any:
        if hiccups[0]:
            hiccups[0] -= 1
            raise BackendUnavailable("blip")
        return await real(**kwargs)

    app.backend.child_outcomes = flaky  # type: ignore[method-assign]
    handle = await app.add_flow(flow(work.call("P"), children=[work.call("c")]))
    await start_worker(concurrency=2)
    job = await handle.wait(timeout=20)
    assert job.state == JobState.COMPLETED and hiccups == [0]


async def test_a_piped_step_after_a_step_that_did_not_complete_says_so(
    app: Conveyor, start_worker: StartWorker
) -> None:
    @app.task
    async def first() -> int:
        raise NonRetryable("no")

    @app.task
    async def second(value: int) -> int:
        return value

    handle = await app.add_flow(chain(flow(first.call(), on_failure="ignore"), second.pipe()))
    await start_worker(concurrency=2)
    job = await handle.wait(timeout=20)
    assert job.state == JobState.FAILED and job.error is not None
    assert "the chain step before this one did not complete (failed" in job.error


async def test_completions_of_plain_grouped_and_flow_jobs_together(app: Conveyor) -> None:
    """On Redis, completions of one loop turn go out as one script call whose
    jobs carry different keys (a job in a group or a flow has two more)."""
    work = _work(app)
    await app.set_limits("default", group="*", max_active=1)
    parent = await app.add_flow(flow(work.call("P"), children=[work.call("child")]))
    await app.enqueue_many(
        [
            work.call("plain"),
            work.configure(group="g").call("g1"),
            work.configure(group="g").call("g2"),
        ]
    )
    running = await claim_by_name(app)
    assert sorted(running) == ["child", "g1", "plain"]  # g2 waits: g is at its limit
    results = await asyncio.gather(
        *(
            app.backend.complete(
                job_id=c.job.id, token=c.token, result=b'"ok"', retention=Retention()
            )
            for c in running.values()
        )
    )
    assert results == [True, True, True]
    await app.backend.apply_outcomes(child_ids=None, limit=10)
    assert (await app.get_job(parent.id)).state == JobState.WAITING
    assert sorted(c.job.args["name"] for c in await claim(app)) == ["P", "g2"]  # g's slot freed
