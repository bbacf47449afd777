"""Metrics and health: what the store holds and what this process's workers
ran, for Prometheus, load balancers and autoscalers (``conveyor[metrics]``).

- ``snapshot``: the store's picture, read once per few seconds for everyone.
- ``metrics``: ``Monitor`` and its Prometheus collector and histograms.
- ``http``: ``metrics_app``, the ASGI app of ``/metrics`` and the health checks.
- ``serving``: uvicorn beside a worker or alone (``conveyor worker
  --metrics-port``, ``conveyor metrics``).

Imports the core; the core never imports it.
"""

from conveyor.monitor.http import metrics_app, workers_health
from conveyor.monitor.metrics import JobMetrics, Monitor
from conveyor.monitor.snapshot import QueueSnapshot, Snapshot, Snapshots

__all__ = [
    "JobMetrics",
    "Monitor",
    "QueueSnapshot",
    "Snapshot",
    "Snapshots",
    "metrics_app",
    "workers_health",
]
