"""What the ``conveyor`` command prints: queues, limits, workers, jobs and
schedules, readable in an 80-column terminal.

Tables have no borders, so their headers stay whole in 80 columns (the state
headers are short: ``delay wait child active done failed cancel``) and a
name copies without box characters; text too long for its column wraps and
is never cut. Job ids are printed whole: generated ids begin with their
creation time, so jobs made together differ only at the end, and every
command takes the whole id. Names and errors are printed as they are, never
read as rich markup.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.cron import ScheduleInfo
from conveyor.flow import FlowNode
from conveyor.job import Job, JobState
from conveyor.limits import EVERY_GROUP, Limits

__all__ = ["STATE_HEADERS", "print_info", "print_jobs", "print_schedules"]

# Headers of the job states, whole in 80 columns (rich cut the full names to
# four letters and an ellipsis, and waiting and waiting_children looked alike).
STATE_HEADERS = {
    JobState.DELAYED: "delay",
    JobState.WAITING: "wait",
    JobState.WAITING_CHILDREN: "child",
    JobState.ACTIVE: "active",
    JobState.COMPLETED: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancel",
}


def print_info(
    url: str,
    warnings: Iterable[str],
    queues: list[QueueInfo],
    limits: dict[str, dict[str | None, Limits]],
    workers: list[WorkerInfo],
) -> None:
    """``conveyor info``: the store's warnings, its queues, their limits, live workers."""
    console = Console(markup=False)
    for warning in warnings:
        console.print(f"warning: {warning}", style="bold red")
    counts = STATE_HEADERS.values()
    table = _table(
        f"Queues ({url})",
        "queue",
        *counts,
        "paused",
        numbers=counts,
        caption="child: waiting for its children (a flow)",
    )
    for queue in queues:
        table.add_row(
            queue.name,
            *(str(queue.counts[s]) for s in STATE_HEADERS),
            "yes" if queue.paused else "",
        )
    console.print(table)
    limited = _table("Limits", "queue", "limits")  # sentences: a table of their own, with room
    for queue in queues:
        if limits[queue.name]:
            limited.add_row(queue.name, _describe(limits[queue.name]))
    if limited.row_count:
        console.print(limited)
    print_workers(workers, console)


def print_workers(workers: list[WorkerInfo], console: Console | None = None) -> None:
    """``conveyor workers list`` (and the end of ``info``): each live worker."""
    numbers = ("slots", "active", "processed", "last seen")
    workers_table = _table("Workers", "id", "queues", "paused", *numbers, numbers=numbers)
    for w in workers:
        seen = datetime.fromtimestamp(w.last_seen_ms / 1000).strftime("%H:%M:%S")
        workers_table.add_row(
            w.id,
            ", ".join(w.queues),
            "yes" if w.paused else "",
            str(w.concurrency),
            str(w.active),
            str(w.processed),
            seen,
        )
    (console or Console(markup=False)).print(workers_table)


def print_jobs(title: str, found: list[Job]) -> None:
    """``conveyor jobs list``: one line per job in aligned columns, and a job's
    error indented on the lines below its own (beside a 32-character id an
    error column would get no room in 80 columns)."""
    header = ("id", "task", "queue", "prio", "tries", "progress")
    rows = [
        (
            job.id,
            job.task,
            job.queue,
            str(job.priority),
            f"{job.attempts}/{job.max_attempts}",
            f"{job.progress:.0f}%",
        )
        for job in found
    ]
    widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in pairs).rstrip()

    console = Console(markup=False, highlight=False, soft_wrap=True)  # long lines wrap, uncut
    console.print(title, style="italic")
    console.print(line(header), style="bold")
    for job, cells in zip(found, rows, strict=True):
        console.print(line(cells))
        if job.error:
            indent = " " * 4
            error = textwrap.fill(
                job.error, console.width, initial_indent=indent, subsequent_indent=indent
            )
            console.print(error, style="red")


def print_flow(root: FlowNode) -> None:
    """``conveyor jobs flow``: the tree, one job a line, children indented."""

    def lines(node: FlowNode, depth: int) -> Iterator[str]:
        job = node.job
        more = "  (more not shown)" if node.truncated else ""
        yield f"{'  ' * depth}{job.id}  {job.task}  {job.state.value}{more}"
        for child in node.children:
            yield from lines(child, depth + 1)

    for line in lines(root, 0):
        click.echo(line)


def print_schedules(listed: list[ScheduleInfo]) -> None:
    """``conveyor schedules list``: each schedule with its next run (UTC)."""
    table = _table("Schedules", "id", "task", "when", "tz", "state", "ticks", "next run (UTC)")
    for info in listed:
        s = info.schedule
        when = s.cron if s.cron is not None else f"every {s.every_s:g}s"
        state = "ended" if info.ended else "paused" if s.paused else ""
        ticks = str(info.ticks) if s.limit is None else f"{info.ticks}/{s.limit}"
        table.add_row(
            s.id,
            s.task,
            when,
            s.tz,
            state,
            ticks,
            "" if info.next_run_ms is None else _utc(info.next_run_ms),
        )
    Console(markup=False).print(table)


def _table(
    title: str, *columns: str, numbers: Iterable[str] = (), caption: str | None = None
) -> Table:
    """A table without borders; ``numbers`` are right-aligned and never wrap."""
    table = Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=None,
        pad_edge=False,
        header_style="bold",
    )
    right = set(numbers)
    for column in columns:
        if column in right:
            table.add_column(column, justify="right", no_wrap=True)
        else:
            table.add_column(column, overflow="fold")
    return table


def _describe(limits: dict[str | None, Limits]) -> str:
    """A queue's limits: ``max 3 active, 100/m; each group max 1 active; acme ...``."""
    labels = {None: "", EVERY_GROUP: "each group "}
    return "; ".join(f"{labels.get(scope, f'{scope} ')}{limit}" for scope, limit in limits.items())


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
