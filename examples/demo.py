"""Conveyor demo: a few hundred jobs moving through a worker, live.

Run it with ``python examples/demo.py``. It shows, on the embedded SQLite
store (a fresh database file in a temporary directory, printed at the start):

* one in-process ``Worker`` serving four queues, run as an asyncio task;
* 300 jobs of four kinds, most added in one atomic ``app.enqueue_many`` batch:
  ``resize_image`` (async) and ``render_report`` (a plain function run on the
  worker's thread pool) report progress through ``current_job().progress``,
  and reports write log lines with ``current_job().log``; ``send_email`` fails
  about 30 % of its attempts and retries with a fixed 0.2 s backoff (addresses
  at ``invalid.example`` raise ``NonRetryable`` and fail at once);
  ``import_feed`` always fails and ends in the dead-letter set (``failed``);
* delayed jobs (``task.configure(delay=1.5)``) and urgent, higher-priority
  jobs that jump ahead of the bulk batch;
* live progress bars (all jobs, and one per queue), a line of counts per
  state and the active jobs with their progress, refreshed five times a
  second from ``app.queues()`` and ``app.list_jobs(JobState.ACTIVE)``;
* once every job has finished: a table of states per queue, a few failed jobs
  with their errors, how long urgent jobs waited and one report's log.

It ends by itself (after at most 60 s even if jobs are stuck) and exits with
1 if a job did not end the way the demo expects, else 0. When stdout is not a
terminal (CI) the live display is replaced by one line of counts per second.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from conveyor import (
    Conveyor,
    Job,
    JobState,
    NewJob,
    NonRetryable,
    QueueInfo,
    Retry,
    Worker,
    WorkerSettings,
    current_job,
)

DEADLINE_S = 60.0
REFRESH_S = 0.2
CONCURRENCY = 16
QUEUES = ("images", "reports", "email", "imports")
UNFINISHED = (JobState.DELAYED, JobState.WAITING, JobState.WAITING_CHILDREN, JobState.ACTIVE)
STATE_STYLES = {
    JobState.DELAYED: "magenta",
    JobState.WAITING: "yellow",
    JobState.WAITING_CHILDREN: "yellow",
    JobState.ACTIVE: "cyan",
    JobState.COMPLETED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "bright_black",
}

# A fresh store on every run: the demo must not add jobs to a database it
# did not create (its explicit URL wins over a CONVEYOR_URL).
DB_PATH = Path(tempfile.mkdtemp(prefix="conveyor-demo-")) / "demo.db"
app = Conveyor(f"sqlite:///{DB_PATH}")
rng = random.Random()


# -- the tasks ---------------------------------------------------------------------


@app.task(name="resize_image", queue="images")
async def resize_image(image_id: int, width: int) -> dict[str, int]:
    """Async work: four short steps, each reported as progress."""
    job = current_job()
    for step, stage in enumerate(("download", "decode", "resize", "upload"), start=1):
        await asyncio.sleep(rng.uniform(0.05, 0.12))
        job.progress(step * 25, stage=stage)
    return {"image_id": image_id, "width": width}


@app.task(name="render_report", queue="reports")
def render_report(report_id: int, pages: int) -> str:
    """Sync work, run on the worker's thread pool: progress and a log line per page."""
    job = current_job()
    for page in range(1, pages + 1):
        time.sleep(rng.uniform(0.08, 0.15))
        job.progress(100 * page / pages, stage=f"page {page}/{pages}")
        job.log(f"rendered page {page} of report {report_id}")
    return f"report-{report_id}.pdf"


@app.task(name="send_email", queue="email", retries=3, backoff=Retry.fixed(0.2))
async def send_email(to: str, template: str) -> None:
    """Flaky work: about 30 % of attempts fail and are retried after 0.2 s."""
    if to.endswith("@invalid.example"):
        raise NonRetryable(f"mailbox {to} does not exist")
    await asyncio.sleep(rng.uniform(0.03, 0.1))
    if rng.random() < 0.3:
        raise ConnectionError(f"SMTP server busy (attempt {current_job().attempt})")


@app.task(name="import_feed", queue="imports", retries=2, backoff=Retry.fixed(0.3))
async def import_feed(url: str) -> int:
    """Broken work: every attempt fails, so each job ends in the dead-letter set."""
    await asyncio.sleep(0.05)
    raise ValueError(f"feed {url} is not valid XML")


# -- producing ---------------------------------------------------------------------


async def enqueue_jobs() -> Counter[str]:
    """Add 300 jobs; returns how many went to each queue."""
    bulk: list[NewJob] = [resize_image.call(i, 640) for i in range(120)]
    bulk += [render_report.call(i, rng.randint(3, 6)) for i in range(30)]
    bulk += [send_email.call(f"user{i}@example.com", "welcome") for i in range(85)]
    bulk += [send_email.call(f"ghost{i}@invalid.example", "welcome") for i in range(5)]
    rng.shuffle(bulk)  # interleave the kinds: each queue then moves at once
    await app.enqueue_many(bulk)  # one atomic write for 240 jobs
    per_queue: Counter[str] = Counter(job.queue for job in bulk)

    urgent = resize_image.configure(priority=50)  # runs before the bulk batch's images
    for i in range(10):
        await urgent.enqueue(1000 + i, 1280)

    later_reports = render_report.configure(delay=1.5)
    later_emails = send_email.configure(delay=1.5)
    for i in range(15):
        await later_reports.enqueue(100 + i, 3)
        await later_emails.enqueue(f"late{i}@example.com", "digest")
    for i in range(20):
        await import_feed.enqueue(f"https://feeds.example.com/{i}.xml")

    per_queue.update(images=10, reports=15, email=15, imports=20)
    return per_queue


# -- the live display --------------------------------------------------------------


def finished(counts: dict[JobState, int]) -> int:
    return sum(n for state, n in counts.items() if state.finished)


def counts_line(total: dict[JobState, int]) -> Text:
    line = Text()
    for state in JobState:
        if state is JobState.WAITING_CHILDREN and not total.get(state):
            continue
        if line:
            line.append("   ")
        line.append(f"{state.value} ", style=STATE_STYLES[state])
        line.append(str(total.get(state, 0)), style="bold")
    return line


def active_table(active: list[Job], running: int) -> Table:
    """The running jobs, each with its whole id (``conveyor jobs show`` takes it;
    ids begin with their creation time, so only their ends tell jobs apart).
    Fits in 80 columns with the longest task name and stage."""
    table = Table(
        title=f"active jobs ({running} running, oldest first)",
        title_justify="left",
        box=None,
        pad_edge=False,
        show_header=True,
        header_style="bold",
    )
    table.add_column("job", no_wrap=True)
    table.add_column("task")
    table.add_column("try", justify="right")
    table.add_column("progress", width=10)
    table.add_column("", justify="right")
    table.add_column("stage")
    for job in active:
        stage = str((job.progress_detail or {}).get("stage", ""))
        table.add_row(
            job.id,
            job.task,
            f"{job.attempts}/{job.max_attempts}",
            ProgressBar(total=100, completed=job.progress, width=10),
            f"{job.progress:.0f}%",
            stage,
        )
    return table


def sum_counts(infos: list[QueueInfo]) -> dict[JobState, int]:
    total: Counter[JobState] = Counter()
    for info in infos:
        total.update(info.counts)
    return {state: total[state] for state in JobState}


async def watch(console: Console, per_queue: Counter[str], started: float) -> bool:
    """Show the jobs moving until all have finished; ``False`` if the deadline passed."""
    expected = sum(per_queue.values())
    progress = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(bar_width=40),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        auto_refresh=False,
    )
    overall = progress.add_task("all jobs", total=expected)
    bars: dict[str, TaskID] = {
        queue: progress.add_task(queue, total=per_queue[queue]) for queue in QUEUES
    }
    interactive = console.is_terminal
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    next_line = loop.time()
    try:
        with Live(console=console, auto_refresh=False) as live:
            while True:
                infos = await app.queues()
                active = await app.list_jobs(JobState.ACTIVE, limit=8)
                total = sum_counts(infos)
                for info in infos:
                    if info.name in bars:
                        progress.update(bars[info.name], completed=finished(info.counts))
                done = finished(total)
                progress.update(overall, completed=done)
                running = total[JobState.ACTIVE]
                jobs = active_table(active, running) if active else Text("no active jobs")
                live.update(Group(progress, Text(), counts_line(total), Text(), jobs), refresh=True)
                if not interactive and loop.time() >= next_line:  # CI: a line per second
                    next_line += 1.0
                    stamp = Text(f"[{time.monotonic() - started:4.1f}s] {done}/{expected} done: ")
                    console.print(stamp.append_text(counts_line(total)), soft_wrap=True)
                if done >= expected:
                    return True
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(REFRESH_S)
    finally:
        if not interactive:
            console.line()  # rich ends the final frame without a newline when not a terminal


# -- the final report --------------------------------------------------------------


async def report(console: Console, per_queue: Counter[str]) -> list[str]:
    """Print the final tables; returns what did not end as expected."""
    infos = {info.name: info.counts for info in await app.queues()}
    table = Table(title="Jobs per queue and final state", title_justify="left")
    table.add_column("queue", style="bold")
    for state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        table.add_column(state.value, justify="right", style=STATE_STYLES[state])
    table.add_column("unfinished", justify="right")
    table.add_column("total", justify="right", style="bold")
    for queue in QUEUES:
        counts = infos.get(queue, dict.fromkeys(JobState, 0))
        table.add_row(
            queue,
            str(counts[JobState.COMPLETED]),
            str(counts[JobState.FAILED]),
            str(counts[JobState.CANCELLED]),
            str(sum(counts[state] for state in UNFINISHED)),
            str(sum(counts.values())),
        )
    console.print(table)

    failed = await app.list_jobs(JobState.FAILED, limit=1000)
    exhausted = [job for job in failed if job.task == "send_email" and job.attempts > 1]
    refused = [job for job in failed if job.task == "send_email" and job.attempts == 1]
    broken = [job for job in failed if job.task == "import_feed"]
    console.print(dead_letter_table(exhausted[:2] + refused[:2] + broken[:2], len(failed)))
    console.print(f"In full: conveyor jobs show ID --url sqlite:///{DB_PATH}", soft_wrap=True)

    images = await app.list_jobs(JobState.COMPLETED, queue="images", limit=1000)
    waits: dict[bool, list[float]] = {True: [], False: []}
    for job in images:
        if job.started_at is not None:
            waits[job.priority > 0].append((job.started_at - job.created_at).total_seconds())
    if waits[True] and waits[False]:
        console.print(
            f"Urgent images (priority 50) waited {mean(waits[True]):.2f} s on average"
            f" before starting; the bulk batch's images {mean(waits[False]):.2f} s."
        )

    reports = await app.list_jobs(JobState.COMPLETED, queue="reports", limit=1)
    if reports:
        logs = await app.get_logs(reports[0].id)
        console.print(f"Log of report job {reports[0].id}:")
        for entry in logs:
            stamp = f"{entry.at:%H:%M:%S}.{entry.at.microsecond // 1000:03d}"
            console.print(f"  {stamp}  {entry.message}", highlight=False)

    problems: list[str] = []
    for queue, state in (
        ("images", JobState.COMPLETED),
        ("reports", JobState.COMPLETED),
        ("imports", JobState.FAILED),
    ):
        counts = infos.get(queue, {})
        if counts.get(state, 0) != per_queue[queue]:
            seen = ", ".join(f"{s.value} {n}" for s, n in counts.items() if n) or "none"
            problems.append(f"expected all {per_queue[queue]} {queue} jobs {state}: {seen}")
    return problems


def dead_letter_table(examples: list[Job], failed: int) -> Table:
    """A few failed jobs with their whole ids, which ``conveyor jobs show`` and
    ``conveyor jobs retry`` take."""
    title = f"Dead-letter set: {failed} failed jobs, a few of them"
    dead = Table(title=title, title_justify="left")
    dead.add_column("job", no_wrap=True)
    dead.add_column("task")
    dead.add_column("attempts", justify="right")
    dead.add_column("error", style="red", overflow="fold")
    for job in examples:
        dead.add_row(job.id, job.task, f"{job.attempts}/{job.max_attempts}", job.error or "")
    return dead


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


# -- main --------------------------------------------------------------------------


async def main() -> int:
    console = Console()
    # The worker logs each failed attempt as a warning; the dead-letter table
    # shows them instead, so keep the live display free of log lines.
    logging.getLogger("conveyor").setLevel(logging.ERROR)
    console.print(f"[bold]Conveyor demo[/]: SQLite store at {DB_PATH}", soft_wrap=True)
    started = time.monotonic()
    async with app:
        settings = WorkerSettings(queues=QUEUES, concurrency=CONCURRENCY, shutdown_grace_s=5.0)
        worker = Worker(app, settings)
        worker_task = asyncio.create_task(worker.run(), name="worker")
        try:
            per_queue = await enqueue_jobs()
            console.print(f"Enqueued {sum(per_queue.values())} jobs: {dict(per_queue)}")
            all_done = await watch(console, per_queue, started)
        finally:
            worker.stop()
            await worker_task
        elapsed = time.monotonic() - started
        if all_done:
            console.print(f"[green]Every job finished[/] in {elapsed:.1f} s.")
        else:
            console.print(f"[red]Deadline of {DEADLINE_S:.0f} s reached[/] with jobs unfinished.")
        problems = await report(console, per_queue)
    if not all_done:
        problems.append("jobs were still unfinished at the deadline")
    for problem in problems:
        console.print(f"[red]unexpected:[/] {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
