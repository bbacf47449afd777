"""The chaos suite's parts: worker processes that can be SIGKILLed on a seeded
schedule, a producer that keeps enqueueing through store outages, and a
checker that sorts every job by what the execution log and the store say.

The execution log (``tests/chaos_app.py``) is written by the job code itself,
outside the store, so it sees what really ran even when the store is wrong.
The checker puts each job in one or more of:

- ``lost``: acknowledged by an enqueue, but not completed in the final store,
  or completed there without any ``end`` line (nothing ran to the end).
- ``duplicated``: a run that is not the last one and whose worker was not
  killed between that run's start and the next run's start. At-least-once
  delivery allows a second run only after the first worker died; a first
  worker still alive when the job ran again means a live worker lost its
  lease (or the store forgot a completion). This covers both a second ``end``
  line and a second ``start`` line.
- ``unexpected``: log lines, or stored jobs, for ids no enqueue acknowledged.
- ``recovered``: ran more than once, every earlier run on a worker killed
  before the next run began: what leases are for.

Times in the log and in the kill record are ``time.monotonic()`` (one clock
for every process on Linux). A killed worker's time of death is taken after
``wait()`` returns, so none of its lines is later; a later process that
reuses its pid writes lines after that time, so pid reuse cannot explain a run.

Limits: workers keep the default reclaim interval (5 s) and reclaim in two
phases, so the jobs of the last killed worker come back within about a
lease plus 10 s; ``settle_s`` allows for that. Workers run with
``CONVEYOR_MAX_STALLS=1000``: with a kill every second a job may be caught by
two kills, and the default (1) would then fail it as ``stalled`` by design,
which is not what this suite measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from conveyor import BackendUnavailable, Conveyor, Job, JobNotFound, JobState
from conveyor.backends.values import NewJob
from conveyor.stats import Stats, add

from .. import chaos_app

ROOT = Path(__file__).resolve().parents[2]
FULL_ENV = "CONVEYOR_CHAOS"  # "full": the sizes
SEED_ENV = "CONVEYOR_CHAOS_SEED"  # replay a schedule
FULL_OPTION = "--chaos-full"
SUMMARIES = pytest.StashKey[list[str]]()
UNFINISHED = (JobState.DELAYED, JobState.WAITING, JobState.WAITING_CHILDREN, JobState.ACTIVE)
PAGE = 10_000


# -- mode and seed -------------------------------------------------------------


def full_mode(config: pytest.Config) -> bool:
    option = bool(config.getoption(FULL_OPTION, default=False))
    return option or os.environ.get(FULL_ENV, "").lower() == "full"


def chaos_seed() -> int:
    """``CONVEYOR_CHAOS_SEED`` when set, else a fresh one; printed either way."""
    raw = os.environ.get(SEED_ENV)
    seed = int(raw) if raw else random.SystemRandom().randrange(2**32)
    print(f"chaos seed={seed} (replay: {SEED_ENV}={seed})")
    return seed


def report(config: pytest.Config, line: str) -> None:
    """Print a summary line, and keep it for the terminal summary at the end."""
    print(line)
    config.stash.setdefault(SUMMARIES, []).append(line)


# -- the execution log and the checker -----------------------------------------


@dataclass(frozen=True)
class Event:
    kind: str  # "start" or "end"
    job_id: str
    pid: int
    attempt: int
    at: float  # time.monotonic() in the worker


def parse_log(text: str) -> tuple[list[Event], list[str]]:
    """The events of an execution log, and the lines that are not events."""
    events: list[Event] = []
    malformed: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        try:
            kind, job_id, pid, attempt, at = parts
            if kind not in ("start", "end"):
                raise ValueError(kind)
            events.append(Event(kind, job_id, int(pid), int(attempt), float(at)))
        except ValueError:
            malformed.append(line)
    return events, malformed


@dataclass
class Run:
    pid: int
    started: float
    ended: float | None = None


@dataclass
class Verdict:
    jobs: int
    lost: dict[str, str] = field(default_factory=dict)  # job id -> why
    duplicated: dict[str, str] = field(default_factory=dict)
    unexpected: dict[str, str] = field(default_factory=dict)
    recovered: set[str] = field(default_factory=set)
    unfinished: dict[str, str] = field(default_factory=dict)  # left active/waiting
    malformed: list[str] = field(default_factory=list)

    def problems(self, *, limit: int = 5) -> list[str]:
        found = []
        for name in ("lost", "duplicated", "unexpected", "unfinished"):
            items: dict[str, str] = getattr(self, name)
            if items:
                sample = "; ".join(f"{k}: {v}" for k, v in list(items.items())[:limit])
                found.append(f"{len(items)} {name} (e.g. {sample})")
        if self.malformed:
            found.append(f"{len(self.malformed)} malformed log lines: {self.malformed[:limit]}")
        return found


def runs_of(events: Sequence[Event]) -> tuple[list[Run], int]:
    """One job's runs in time order (an ``end`` closes the open run on its pid),
    and how many ``end`` lines closed no run."""
    runs: list[Run] = []
    open_runs: dict[int, Run] = {}
    orphan_ends = 0
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "start":
            run = Run(event.pid, event.at)
            runs.append(run)
            open_runs[event.pid] = run
        else:
            run_or_none = open_runs.pop(event.pid, None)
            if run_or_none is None:
                orphan_ends += 1
            else:
                run_or_none.ended = event.at
    return runs, orphan_ends


def killed_between(kills: Mapping[int, Sequence[float]], pid: int, after: float, by: float) -> bool:
    return any(after < moment <= by for moment in kills.get(pid, ()))


def classify(
    acknowledged: Collection[str],
    events: Iterable[Event],
    kills: Mapping[int, Sequence[float]],
    final: Mapping[str, JobState | str],
    *,
    errors: Mapping[str, str | None] | None = None,
    malformed: Sequence[str] = (),
) -> Verdict:
    """Sort every job by the execution log, the kills (pid -> monotonic times
    of death) and the final store (job id -> state; ``errors`` adds why a
    job failed)."""
    errors = errors or {}
    expected = set(acknowledged)
    verdict = Verdict(jobs=len(expected), malformed=list(malformed))
    by_job: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_job[event.job_id].append(event)
    for job_id, job_events in by_job.items():
        if job_id not in expected:
            verdict.unexpected[job_id] = f"{len(job_events)} log lines, never enqueued"
    for job_id, stored in final.items():
        if job_id not in expected and job_id not in verdict.unexpected:
            verdict.unexpected[job_id] = f"in the store ({stored}), never enqueued"
    for job_id in sorted(expected):
        runs, orphan_ends = runs_of(by_job.get(job_id, []))
        state = final.get(job_id)
        if state is None:
            verdict.lost[job_id] = f"not in the store; {len(runs)} runs"
        elif state != JobState.COMPLETED:
            why = errors.get(job_id)
            verdict.lost[job_id] = f"{state}" + (f" ({why})" if why else "")
            if state in UNFINISHED:
                verdict.unfinished[job_id] = str(state)
        elif not any(run.ended is not None for run in runs):
            verdict.lost[job_id] = f"completed in the store, no end line; {len(runs)} starts"
        unexplained = [
            earlier
            for earlier, later in itertools.pairwise(runs)
            if not killed_between(kills, earlier.pid, earlier.started, later.started)
        ]
        if unexplained or orphan_ends:
            verdict.duplicated[job_id] = (
                f"{len(runs)} runs on pids {[r.pid for r in runs]}, "
                f"{len(unexplained)} earlier ones on a worker still alive when it ran again, "
                f"{sum(r.ended is not None for r in runs) + orphan_ends} end lines"
            )
        elif len(runs) > 1:
            verdict.recovered.add(job_id)
    return verdict


# -- worker processes ----------------------------------------------------------


class ChaosWorkers:
    """Worker processes of ``tests.chaos_app:app``; they can be SIGKILLed and
    replaced, and every death is recorded with its monotonic time."""

    def __init__(
        self, url: str, directory: Path, *, concurrency: int, lease_s: float, grace_s: float = 5.0
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "executions.log"
        self.stderr = directory / "workers.err"
        self.args = ["-c", str(concurrency), "--lease", str(lease_s), "--grace", str(grace_s)]
        self.env = {
            **os.environ,
            "CONVEYOR_URL": url,
            "CONVEYOR_TEST_LOG": str(self.log),
            "CONVEYOR_MAX_STALLS": "1000",  # see the module docstring
        }
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kills: dict[int, list[float]] = defaultdict(list)
        self.killed = 0
        self.crashed: list[tuple[int, int]] = []  # (pid, exit code) of unasked exits
        self._seen_dead: set[int] = set()

    def start(self) -> subprocess.Popen[bytes]:
        with self.stderr.open("ab") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "tests.chaos_app:app", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.procs.append(proc)
        return proc

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [proc for proc in self.procs if proc.poll() is None]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL; the time of death is taken once the process is gone."""
        proc.kill()
        proc.wait(10)
        self.kills[proc.pid].append(time.monotonic())
        self._seen_dead.add(id(proc))
        self.killed += 1

    def reap(self) -> int:
        """Record workers that exited unasked (a death like a kill, for the
        checker) and start one replacement each; returns how many."""
        found = 0
        for proc in self.procs:
            code = proc.poll()
            if code is not None and id(proc) not in self._seen_dead:
                self._seen_dead.add(id(proc))
                self.kills[proc.pid].append(time.monotonic())
                self.crashed.append((proc.pid, code))
                found += 1
        for _ in range(found):
            self.start()
        return found

    def stop(self, timeout: float = 30.0) -> list[int | None]:
        """SIGTERM every live worker; their exit codes (None: had to be killed)."""
        live = self.live()
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: list[int | None] = []
        for proc in live:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes.append(None)
        return codes

    def close(self) -> None:
        """Kill whatever still runs (a failed test must leave no process)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def errors(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def events(self) -> tuple[list[Event], list[str]]:
        return parse_log(self.log.read_text()) if self.log.exists() else ([], [])


# -- producer and store --------------------------------------------------------


@dataclass
class Producer:
    """Enqueues ``calls`` in batches spread over ``spread_s`` seconds. A batch
    that fails with ``BackendUnavailable`` is sent again, same ids, until
    acknowledged (enqueueing a stored id adds nothing), when ``retry`` is on."""

    app: Conveyor
    calls: list[NewJob]
    spread_s: float
    batch: int = 100
    retry: bool = False
    acknowledged: list[str] = field(default_factory=list)
    retries: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        batches = [self.calls[i : i + self.batch] for i in range(0, len(self.calls), self.batch)]
        start = loop.time()
        for n, chunk in enumerate(batches):
            due = start + self.spread_s * n / max(1, len(batches))
            await asyncio.sleep(max(0.0, due - loop.time()))
            while True:
                try:
                    await self.app.enqueue_many(chunk)
                    break
                except BackendUnavailable as exc:
                    if not self.retry:
                        self.failures.append(repr(exc))
                        raise
                    self.retries += 1
                    await asyncio.sleep(0.1)
            self.acknowledged += [job.id for job in chunk]


async def finished_count(app: Conveyor, queue: str = "default") -> int:
    counts = await app.counts(queue)
    return sum(n for state, n in counts.items() if state.finished)


async def final_jobs(app: Conveyor, acknowledged: Collection[str]) -> dict[str, Job]:
    """Every stored job, by id: each state listed in one page (paging through
    finished jobs on Redis skips some, see ``test_paging_...`` in
    test_chaos.py), then each acknowledged job the listing missed read by id,
    so that "not in the store" is never the listing's mistake."""
    jobs: dict[str, Job] = {}
    limit = len(acknowledged) + PAGE  # more than there can be: one page holds all
    for state in JobState:
        jobs.update((job.id, job) for job in await app.list_jobs(state, limit=limit))
    for job_id in set(acknowledged) - jobs.keys():
        with contextlib.suppress(JobNotFound):
            jobs[job_id] = await app.get_job(job_id)
    return jobs


def integrity(db_path: str) -> str:
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    return "; ".join(str(row[0]) for row in rows)


# -- one chaos run ---------------------------------------------------------------


Fault = Callable[[], Awaitable[str]]  # does something to the store; says what


@dataclass(frozen=True)
class Plan:
    name: str
    jobs: int
    workers: int
    concurrency: int
    lease_s: float
    tick_s: float  # mean time between chaos events (each tick: 0.5..1.5 of it)
    kill_workers: bool  # each tick SIGKILLs one random worker and starts another
    spread_s: float  # the producer spreads its enqueues over this long
    job_ms: tuple[float, float] = (5.0, 40.0)
    stagger_s: float = 0.0  # workers start spread over this long (their chores' phases differ)
    min_ticks: int = 6  # chaos events at least, however fast the jobs go
    settle_s: float = 60.0  # after the last event, deadline for every job to finish
    max_chaos_s: float = 120.0  # no chaos event after this long


@dataclass
class Outcome:
    plan: Plan
    seed: int
    verdict: Verdict
    kills: int
    crashes: list[tuple[int, int]]
    faults: list[str]
    exit_codes: list[int | None]
    enqueue_retries: int
    stderr: str
    jobs: dict[str, Job]
    events: list[Event]  # the execution log's
    totals: Stats  # the store's outcomes of the queue, ever (conveyor.stats)
    counted: Stats  # and the sum of its minutes over the run
    wall_s: float

    def summary(self, store: str) -> str:
        v = self.verdict
        return (
            f"chaos {self.plan.name}[{store}]: jobs={v.jobs} kills={self.kills} "
            f"lost={len(v.lost)} duplicated={len(v.duplicated)} recovered={len(v.recovered)} "
            f"unexpected={len(v.unexpected)} crashes={len(self.crashes)} "
            f"faults={len(self.faults)} wall={self.wall_s:.1f}s seed={self.seed}"
        )

    def context(self) -> str:
        """What an assertion message needs to replay and understand a failure."""
        problems = self.verdict.problems()
        return (
            f"seed={self.seed} ({SEED_ENV}={self.seed} replays the schedule); "
            f"faults={self.faults}; crashes={self.crashes}; exit codes={self.exit_codes}; "
            f"problems={problems}"
        )


async def run_chaos(
    plan: Plan,
    url: str,
    directory: Path,
    seed: int,
    *,
    faults: Mapping[int, Fault] | None = None,
    retry_enqueue: bool = False,
    prepare: Callable[[Conveyor], Awaitable[None]] | None = None,
) -> Outcome:
    """Start the workers, enqueue while ticking chaos events, let every job
    finish, stop the workers and sort every job.

    ``faults`` maps a tick number to a store fault run at that tick (before
    that tick's worker kill); ticks go on until ``min_ticks`` and every fault
    have run, the producer is done and no job waits to be claimed (or
    ``max_chaos_s``).
    Then every job gets ``settle_s`` to finish: a lease to expire and a
    reclaim (every 5 s) for the jobs of the last killed workers. ``prepare``
    runs on the producer's app before any worker starts (to set limits, say)."""
    faults = dict(faults or {})
    rng = random.Random(seed)
    began = time.monotonic()
    workers = ChaosWorkers(url, directory, concurrency=plan.concurrency, lease_s=plan.lease_s)
    done_faults: list[str] = []
    try:
        async with chaos_app.build(url) as app:
            step = app.tasks["step"]
            calls = [step.call(n, rng.uniform(*plan.job_ms)) for n in range(plan.jobs)]
            if prepare is not None:
                await prepare(app)
            for n in range(plan.workers):
                workers.start()
                if n < plan.workers - 1 and plan.stagger_s:
                    await asyncio.sleep(plan.stagger_s / plan.workers * rng.uniform(0.5, 1.5))
            producer = Producer(app, calls, plan.spread_s, retry=retry_enqueue)
            producing = asyncio.create_task(producer.run())

            async def all_done() -> bool:
                if not producing.done():
                    return False
                try:
                    return await finished_count(app) >= len(producer.acknowledged)
                except BackendUnavailable:
                    return False

            async def all_handed_out() -> bool:
                # Nothing left to claim: only leases remain, some of them held by
                # killed workers. More kills now would only keep the tail going.
                if not producing.done():
                    return False
                try:
                    counts = await app.counts("default")
                except BackendUnavailable:
                    return False
                return counts[JobState.WAITING] + counts[JobState.DELAYED] == 0

            try:
                tick = 0
                while time.monotonic() - began < plan.max_chaos_s:
                    await asyncio.sleep(plan.tick_s * rng.uniform(0.5, 1.5))
                    if producing.done() and producing.exception() is not None:
                        break
                    calm_allowed = tick >= plan.min_ticks and tick > max(faults, default=-1)
                    if calm_allowed and await all_handed_out():
                        break
                    workers.reap()
                    if tick in faults:
                        done_faults.append(await faults[tick]())
                    if plan.kill_workers and (live := workers.live()):
                        workers.kill(rng.choice(live))
                        workers.start()
                    tick += 1
                await producing  # raises what the producer met
                settle_by = time.monotonic() + plan.settle_s
                while not await all_done() and time.monotonic() < settle_by:
                    workers.reap()
                    await asyncio.sleep(0.2)
            finally:
                if not producing.done():
                    producing.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await producing
            exit_codes = await asyncio.to_thread(workers.stop)
            jobs = await final_jobs(app, producer.acknowledged)
            totals = (await app.totals()).get("default", Stats())
            counted = add(
                *await app.stats("default", since=timedelta(seconds=time.monotonic() - began + 120))
            )
        events, malformed = workers.events()
        verdict = classify(
            producer.acknowledged,
            events,
            workers.kills,
            {job_id: job.state for job_id, job in jobs.items()},
            errors={job_id: job.error for job_id, job in jobs.items()},
            malformed=malformed,
        )
        return Outcome(
            plan=plan,
            events=events,
            seed=seed,
            verdict=verdict,
            kills=workers.killed,
            crashes=workers.crashed,
            faults=done_faults,
            exit_codes=exit_codes,
            enqueue_retries=producer.retries,
            stderr=workers.errors(),
            jobs=jobs,
            totals=totals,
            counted=counted,
            wall_s=time.monotonic() - began,
        )
    finally:
        workers.close()
