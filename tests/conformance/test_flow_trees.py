"""Reading a flow back as a tree (get_flow) and adding several flows in one
atomic step (add_flows), on every store."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, InvalidInput, JobNotFound, JobState, Retention, batch, chain, flow
from conveyor.flow import FlowNode

from .conftest import claim

KEEP = Retention()


def _shape(node: FlowNode) -> list[object]:
    """A tree as [task and first argument, state, truncated, [children...]]."""
    args = node.job.args
    label = f"{node.job.task}:{next(iter(args.values()), '')}" if args else node.job.task
    kids = [_shape(child) for child in node.children]
    return [label, node.job.state.value, node.truncated, kids]


async def test_get_flow_returns_the_tree_in_order_from_any_of_its_jobs(app: Conveyor) -> None:
    @app.task
    async def step(name: str) -> str:
        return name

    tree = flow(
        step.call("root"),
        [
            flow(step.call("a"), [step.call("a1"), step.call("a2")]),
            step.call("b"),
            flow(step.call("c"), [step.call("c1")]),
        ],
    )
    root = await app.add_flow(tree)
    expected = [
        "step:root", "waiting_children", False, [
            ["step:a", "waiting_children", False, [
                ["step:a1", "waiting", False, []], ["step:a2", "waiting", False, []]]],
            ["step:b", "waiting", False, []],
            ["step:c", "waiting_children", False, [["step:c1", "waiting", False, []]]],
        ],
    ]  # fmt: skip
    assert _shape(await app.get_flow(root.id)) == expected
    leaf = (await app.get_flow(root.id)).children[0].children[1].job
    assert _shape(await app.get_flow(leaf.id)) == expected  # from any job of it
    (claimed, *_) = await claim(app, limit=1)  # a1, the first ready
    await app.backend.complete(
        job_id=claimed.job.id, token=claimed.token, result=b'"a1"', retention=KEEP
    )
    after = await app.get_flow(root.id)
    assert after.children[0].children[0].job.state is JobState.COMPLETED
    assert after.children[0].children[0].job.result == "a1"


async def test_get_flow_stops_at_its_depth_and_size_limits(app: Conveyor) -> None:
    @app.task
    async def step(name: str) -> str:
        return name

    root = await app.add_flow(chain(step.call("1"), step.call("2"), step.call("3")))
    deep = await app.get_flow(root.id, max_depth=1)  # the root and the step before it
    assert _shape(deep) == ["step:3", "waiting_children", False, [
        ["step:2", "waiting_children", True, []]]]  # fmt: skip
    wide = await app.add_flow(batch([step.call(str(n)) for n in range(10)], then=step.call("end")))
    few = await app.get_flow(wide.id, max_jobs=4)
    assert few.truncated and [c.job.args["name"] for c in few.children] == ["0", "1", "2"]
    alone = await step.enqueue("solo")
    assert _shape(await app.get_flow(alone.id)) == ["step:solo", "waiting", False, []]
    with pytest.raises(JobNotFound):
        await app.get_flow("no-such-job")
    with pytest.raises(InvalidInput) as bad:
        await app.get_flow(root.id, max_jobs=0)
    assert bad.value.field == "max_jobs"


async def test_add_flows_adds_every_flow_or_none(app: Conveyor) -> None:
    @app.task
    async def step(name: str) -> str:
        return name

    first, second = await app.add_flows(
        [
            flow(step.call("p1"), [step.call("k1")]),
            chain(step.call("s1"), step.call("s2")),
        ]
    )
    assert first.created and second.created
    assert (await app.get_job(first.id)).state is JobState.WAITING_CHILDREN
    assert _shape(await app.get_flow(second.id)) == ["step:s2", "waiting_children", False, [
        ["step:s1", "waiting", False, []]]]  # fmt: skip
    counts = await app.counts("default")
    taken = step.configure(job_id="taken")
    await taken.enqueue("x")  # one id of the next call is stored already: nothing is added
    handles = await app.add_flows(
        [flow(step.call("p2"), [step.call("k2")]), flow(step.call("p3"), [taken.call("y")])]
    )
    assert [h.created for h in handles] == [False, False]
    counts_after = await app.counts("default")
    assert counts_after[JobState.WAITING] == counts[JobState.WAITING] + 1  # `taken` only
    assert counts_after[JobState.WAITING_CHILDREN] == counts[JobState.WAITING_CHILDREN]
    same = step.configure(job_id="twice")
    with pytest.raises(InvalidInput) as twice:
        await app.add_flows(
            [flow(step.call("p"), [same.call("a")]), flow(step.call("q"), [same.call("b")])]
        )
    assert twice.value.field == "job_id"
    with pytest.raises(InvalidInput):
        await app.add_flows([])
