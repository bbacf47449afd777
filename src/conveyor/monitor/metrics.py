"""Prometheus metrics: the store's numbers, and this process's job timings.

``Monitor(app)`` puts both in one ``prometheus_client`` registry (its own by
default, with the process and Python collectors; pass ``registry=REGISTRY``
to share the global one):

- From the store, through one cached ``Snapshot`` (``conveyor.monitor.snapshot``),
  so every process reports the same numbers: ``conveyor_queue_jobs{queue,state}``,
  ``conveyor_queue_waiting{queue}`` (ready to run: what an autoscaler scales
  on), ``conveyor_queue_oldest_waiting_age_seconds{queue}``,
  ``conveyor_queue_paused{queue}``, ``conveyor_queue_processed_total{queue,outcome}``
  (the store's totals: completed, failed, retried, stalled, cancelled),
  ``conveyor_dead_letter_jobs{queue}`` (failed jobs kept), ``conveyor_workers_alive{queue}``,
  ``conveyor_store_up`` and, on Redis, ``conveyor_store_memory_used_bytes``
  and ``conveyor_store_memory_limit_bytes`` (when ``maxmemory`` is set).
  While the store is down only ``conveyor_store_up 0`` is reported.
- From this process's workers, through middleware (``conveyor.middleware``):
  the histograms ``conveyor_job_duration_seconds`` and
  ``conveyor_job_wait_seconds{queue,task,outcome}``, outcome being how the
  attempt ended (completed, retrying, failed, released, lost).
- ``conveyor_build_info{version,backend}``, always 1.

Labels are queue, task, state and outcome names only: never a job id or an
error's text, so the series stay few. The store's values are those of the
last snapshot: ``await monitor.refresh()`` before exposing them, as
``metrics_app`` does at each scrape.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from conveyor.app import Conveyor
from conveyor.job import Job, JobState
from conveyor.middleware import Middleware, Outcome
from conveyor.monitor.snapshot import CACHE_S, TIMEOUT_S, Snapshot, Snapshots
from conveyor.version import version

__all__ = ["BUCKETS", "JobMetrics", "Monitor", "StoreCollector"]

# Seconds: prometheus_client's default buckets (up to 10 s, made for requests),
# then longer ones, up to an hour's report: jobs run far longer than requests.
_REQUESTS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS = (*_REQUESTS, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
_BOUNDS = [*(f"{b:g}" for b in BUCKETS), "+Inf"]  # the buckets' "le" labels
OUTCOMES = ("completed", "failed", "retried", "stalled", "cancelled")


class StoreCollector(Collector):
    """The store's numbers of the latest snapshot, as Prometheus metrics."""

    def __init__(self, snapshots: Snapshots, backend: str) -> None:
        self.snapshots = snapshots
        self.backend = backend

    def describe(self) -> list[Metric]:
        return []  # registering it must not read the store

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshots.latest
        up = GaugeMetricFamily("conveyor_store_up", "1 when the store answered the last read.")
        up.add_metric([], 1.0 if snapshot.up else 0.0)
        yield up
        info = GaugeMetricFamily(
            "conveyor_build_info", "Conveyor's version and store.", labels=["version", "backend"]
        )
        info.add_metric([version(), self.backend], 1.0)
        yield info
        if snapshot.up:
            yield from _queue_metrics(snapshot)
            yield from _memory_metrics(snapshot)


def _queue_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "conveyor_queue_jobs", "Jobs in each state, per queue.", labels=["queue", "state"]
    )
    waiting = GaugeMetricFamily(
        "conveyor_queue_waiting", "Jobs ready to run, per queue.", labels=["queue"]
    )
    oldest = GaugeMetricFamily(
        "conveyor_queue_oldest_waiting_age_seconds",
        "How long the job next in line has been ready.",
        labels=["queue"],
    )
    paused = GaugeMetricFamily("conveyor_queue_paused", "1 for a paused queue.", labels=["queue"])
    processed = CounterMetricFamily(
        "conveyor_queue_processed",
        "Outcomes counted by the store since the queue began.",
        labels=["queue", "outcome"],
    )
    dead = GaugeMetricFamily(
        "conveyor_dead_letter_jobs", "Failed jobs kept (the dead-letter set).", labels=["queue"]
    )
    alive = GaugeMetricFamily(
        "conveyor_workers_alive", "Workers alive that take the queue's jobs.", labels=["queue"]
    )
    for queue in snapshot.queues:
        for state in JobState:
            jobs.add_metric([queue.name, state.value], queue.counts.get(state, 0))
        waiting.add_metric([queue.name], queue.counts.get(JobState.WAITING, 0))
        oldest.add_metric([queue.name], queue.oldest_waiting_s or 0.0)
        paused.add_metric([queue.name], 1.0 if queue.paused else 0.0)
        for outcome in OUTCOMES:
            processed.add_metric([queue.name, outcome], getattr(queue.processed, outcome))
        dead.add_metric([queue.name], queue.counts.get(JobState.FAILED, 0))
        alive.add_metric([queue.name], queue.workers)
    yield from (jobs, waiting, oldest, paused, processed, dead, alive)


def _memory_metrics(snapshot: Snapshot) -> Iterator[Metric]:
    for name, value, what in (
        ("conveyor_store_memory_used_bytes", snapshot.memory_used, "Memory the store uses."),
        ("conveyor_store_memory_limit_bytes", snapshot.memory_limit, "The store's memory limit."),
    ):
        if value is not None:
            gauge = GaugeMetricFamily(name, what)
            gauge.add_metric([], value)
            yield gauge


class JobMetrics(Middleware, Collector):
    """Histograms of each attempt this process's workers run: a middleware
    that counts them and the collector that reports them.

    Counted in plain lists on the worker's event loop, not with
    ``prometheus_client.Histogram`` (its locks and label lookups cost a
    no-op job's worker a quarter of its speed); read by copying them."""

    def __init__(self) -> None:
        # (queue, task, outcome) -> per bucket (the last one +Inf), then the sum
        self.duration: dict[tuple[str, str, str], list[float]] = {}
        self.wait: dict[tuple[str, str, str], list[float]] = {}

    async def finished(self, job: Job, outcome: Outcome) -> None:
        key = (job.queue, job.task, outcome.ending)
        for series, value in ((self.duration, outcome.run_s), (self.wait, outcome.wait_s)):
            counts = series.get(key)
            if counts is None:
                counts = series[key] = [0.0] * (len(BUCKETS) + 2)
            counts[bisect_left(BUCKETS, value)] += 1
            counts[-1] += value

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        for name, what, series in (
            ("conveyor_job_duration_seconds", "How long attempts ran.", self.duration),
            (
                "conveyor_job_wait_seconds",
                "How long jobs were ready before an attempt started.",
                self.wait,
            ),
        ):
            family = HistogramMetricFamily(name, what, labels=["queue", "task", "outcome"])
            for key, counts in list(series.items()):
                counts = list(counts)
                cumulative = zip(_BOUNDS, accumulate(counts[:-1]), strict=True)
                family.add_metric(list(key), list(cumulative), sum_value=counts[-1])
            yield family


class Monitor:
    """An app's metrics and health: the store's cached snapshot, the
    registry holding its collector, and this process's job histograms
    (added to the app as middleware, so a worker of the app records them)."""

    def __init__(
        self,
        app: Conveyor,
        *,
        registry: CollectorRegistry | None = None,
        cache_s: float = CACHE_S,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.app = app
        if registry is None:
            registry = CollectorRegistry()
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                registry.register(collector)
        self.registry = registry
        self.snapshots = Snapshots(app, cache_s=cache_s, timeout_s=timeout_s)
        registry.register(StoreCollector(self.snapshots, app.url.split(":", 1)[0]))
        self.jobs = JobMetrics()
        registry.register(self.jobs)
        app.use(self.jobs)

    async def refresh(self) -> Snapshot:
        """The store's snapshot, read again if older than ``cache_s``."""
        return await self.snapshots.get()

    async def exposition(self) -> bytes:
        """The registry in Prometheus's text format, the store's part fresh."""
        await self.refresh()
        return generate_latest(self.registry)
