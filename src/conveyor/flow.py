"""Flows: jobs that wait for other jobs. A parent waits in
``waiting_children`` until every child has finished, then runs with their
outcomes at hand (``current_job().children``); flows nest, and a whole flow
is added in one atomic step (``app.add_flow``).

```python
await app.add_flow(flow(assemble.call(doc), children=[
    render.call(doc, 1),
    flow(render.call(doc, 2), on_failure="ignore"),
    flow(summarize.call(doc), children=[extract.call(doc)]),  # nested
]))
await app.add_flow(chain(fetch.call(url), parse.pipe(strict=True), store.pipe()))
await app.add_flow(batch([resize.call(p) for p in paths], then=notify.call(user)))
```

A child's outcome reaches its parent once, when the child finishes
(completed, failed for good, cancelled, expired, or removed before it
finished). A completed child's result is kept for the parent. Otherwise the
child's ``on_failure`` decides:

- ``"fail"`` (the default): the parent fails at once, with error
  ``child <id> <state>: <error>``, and its own parent hears of that by the
  parent's own policy, up the flow. Its other children run on; what they do
  changes nothing more.
- ``"ignore"``: the parent waits for its other children as if this one had
  succeeded; it sees the failure as ignored.
- ``"decide"``: the parent runs once all its children have finished and
  finds the failure in ``current_job().children.failed``: its code decides.

A chain (``chain(a, b, c)``) is a flow where each step is the parent of the
step before it, with ``on_failure="fail"`` (unless a step given as a flow
says otherwise): ``c`` runs after ``b`` after ``a``, and a step made with
``task.pipe(...)`` gets the result of the step before as its first argument
(checked against its type hints when it runs; if that step did not complete,
the piped step fails with ``NonRetryable``).
A batch (``batch(jobs, then=callback)``) is a flow whose children decide:
the callback runs once every job has finished, with
``current_job().children.succeeded`` and ``.failed`` to count.

Limits: a parent cannot have a delay, ``run_at`` or ``ttl`` (it starts when
its children finish), no job of a flow may use a dedup key, and a flow is
added only whole: if any of its job ids is already stored, nothing is added.
Cancelling or removing a parent does not cancel its children (their
outcomes change nothing, not even for a new job that takes the parent's
id). A parent retried by hand waits again for children still unfinished. A
child retried by hand after its parent heard of it replaces the outcome the
parent sees, if the parent has not run yet, but cannot undo what its failure
did. A parent failed by a child is trimmed by its task's retention only when
one of that task's own jobs fails later. On Redis a finished child's outcome
reaches its parent a moment after the child's own transition (a record
written in that same step, applied by the worker that finished the child or
by any worker within a second); on SQLite, in the same transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from conveyor.backends.base import Backend
from conveyor.backends.values import NewJob, ParentRef
from conveyor.errors import InvalidInput
from conveyor.job import POLICIES, Job, OnFailure

__all__ = ["MAX_DEPTH", "MAX_JOBS", "Flow", "FlowNode", "batch", "chain", "flow", "read_flow"]

MAX_DEPTH = 20  # levels below the root ``get_flow`` reads by default
MAX_JOBS = 1000  # jobs ``get_flow`` reads by default
MAX_CLIMB = 10_000  # parents followed up from a job to find its flow's root


@dataclass(frozen=True)
class Flow:
    """A job and the jobs it waits for (see ``flow``)."""

    job: NewJob
    children: tuple[Flow, ...] = ()
    on_failure: OnFailure = "fail"  # what this job's failure does to its parent


def flow(
    job: NewJob | Flow,
    children: Iterable[NewJob | Flow] = (),
    *,
    on_failure: OnFailure = "fail",
) -> Flow:
    """``job`` waiting for ``children`` (jobs or flows); ``on_failure`` says
    what ``job``'s own failure does to the parent it may get."""
    if on_failure not in POLICIES:
        raise InvalidInput("on_failure", f"must be one of {', '.join(POLICIES)}")
    node = job if isinstance(job, Flow) else Flow(_new_job(job, "job"))
    kids = node.children + tuple(_node(child) for child in children)
    return Flow(node.job, kids, on_failure)


def chain(first: NewJob | Flow, *then: NewJob) -> Flow:
    """Run ``then`` one after the other once ``first`` is done; a step made
    with ``task.pipe(...)`` gets the previous step's result first."""
    if not then:
        raise InvalidInput("then", "a chain needs at least two steps")
    node = _node(first)
    for step in then:
        node = Flow(_new_job(step, "then"), (node,))
    return node


def batch(jobs: Iterable[NewJob | Flow], *, then: NewJob) -> Flow:
    """Run ``then`` once every one of ``jobs`` has finished, however it ended."""
    children = [flow(job, on_failure="decide") for job in jobs]
    if not children:
        raise InvalidInput("jobs", "a batch needs at least one job")
    return Flow(_new_job(then, "then"), tuple(children))


def _node(value: NewJob | Flow) -> Flow:
    return value if isinstance(value, Flow) else Flow(_new_job(value, "children"))


def _new_job(value: object, field: str) -> NewJob:
    if not isinstance(value, NewJob):
        raise InvalidInput(
            field, f"must be a job made by task.call(...), not {type(value).__name__}"
        )
    return value


def flatten(root: Flow) -> list[NewJob]:
    """Every job of the flow, as ``enqueue`` takes them: each child naming its
    parent and policy, each parent the number of its children. Checks the
    limits in the module docstring."""
    jobs: list[NewJob] = []
    seen: set[str] = set()
    flow_id = os.urandom(8).hex()

    def walk(node: Flow, parent: NewJob | None, policy: OnFailure) -> None:
        job = node.job
        if job.id in seen:
            raise InvalidInput("job_id", f"{job.id!r} appears twice in the flow")
        seen.add(job.id)
        if job.dedup_key is not None:
            raise InvalidInput("dedup_key", "jobs of a flow cannot have dedup keys")
        if node.children and (job.delay_ms or job.run_at_ms is not None or job.ttl_ms):
            raise InvalidInput(
                "delay", "a parent starts when its children finish: no delay, run_at or ttl"
            )
        if job.pipe and len(node.children) != 1:
            raise InvalidInput("pipe", "a piped step needs exactly one job before it")
        ref = None if parent is None else ParentRef(parent.id, parent.queue, parent.task)
        jobs.append(
            msgspec.structs.replace(
                job,
                parent=ref,
                on_failure=policy,
                children=len(node.children),
                flow_id=flow_id,
                child_ids=tuple(child.job.id for child in node.children),
            )
        )
        for child in node.children:
            walk(child, job, child.on_failure)

    if not root.children:
        raise InvalidInput("children", "a flow needs at least one child")
    walk(root, None, "fail")
    return jobs


class FlowNode(msgspec.Struct, frozen=True, kw_only=True):
    """One job of a flow as ``app.get_flow`` read it, with the jobs it waits
    (or waited) for, in the flow's order; ``truncated``: it has children past
    the depth or size limit, not read."""

    job: Job
    children: list[FlowNode] = []
    truncated: bool = False


async def read_flow(
    backend: Backend, job_id: str, *, max_depth: int, max_jobs: int
) -> FlowNode | None:
    """The tree of the flow ``job_id`` belongs to, from its root (the highest
    parent still stored), read level by level: at most ``max_depth`` levels
    below the root and ``max_jobs`` jobs, so a wide batch cannot make it
    read the store whole. None: no such job. A job outside any flow is a
    tree of one. Each job is as stored when read: the tree is not one
    snapshot of a flow still running."""
    root = await backend.get_job(job_id=job_id)
    if root is None:
        return None
    for _ in range(MAX_CLIMB):
        parent = None if root.parent_id is None else await backend.get_job(job_id=root.parent_id)
        if parent is None:
            break
        root = parent
    kids: dict[str, list[Job]] = {}
    truncated: set[str] = set()
    level, depth, read = [root], 0, 1
    while level:
        below: list[Job] = []
        for job in level:
            if not job.children:
                continue
            if depth >= max_depth or read >= max_jobs:
                truncated.add(job.id)
                continue
            room = max_jobs - read
            children = await backend.children_of(job_id=job.id, limit=room + 1)
            if len(children) > room:  # one more than room: there are more
                children = children[:room]
                truncated.add(job.id)
            read += len(children)
            kids[job.id] = children
            below += children
        level, depth = below, depth + 1

    def node(job: Job) -> FlowNode:
        return FlowNode(
            job=job, children=[node(c) for c in kids.get(job.id, [])], truncated=job.id in truncated
        )

    return node(root)
