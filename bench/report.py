"""The summary at the top of the bench's JSON, the targets, and the machine's facts."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
from typing import Any

from workers import source_digest

TARGETS: dict[str, dict[str, float]] = {
    "sqlite": {
        "process_per_s": 8_000,  # the async no-op at concurrency 50, default retention
        "enqueue_bulk_per_s": 50_000,
        "latency_p50_ms": 5.0,
    },
    "redis": {
        "process_per_s": 10_000,  # one worker process, its best concurrency, default retention
        "enqueue_single_per_s": 7_000,
        "enqueue_bulk_per_s": 100_000,
        "latency_p50_ms": 0.5,
        "latency_p99_ms": 2.0,
        "worker_peak_rss_mb": 50,  # the async no-op at concurrency 50
    },
    "cluster": {},  # no goals of its own yet
}


def row_key(kind: str, concurrency: int | str) -> str:
    """``process_c50``, ``process_sync_c50``, ``process_io_c50``, ``process_c50_keep_all``,
    ``process_c50_bare``, ``process_c50_monitored``."""
    if kind == "noop":
        return f"process_c{concurrency}"
    if kind == "noop_keep_all":
        return f"process_c{concurrency}_keep_all"
    if kind in ("noop_bare", "noop_monitored"):
        return f"process_c{concurrency}_{kind.removeprefix('noop_')}"
    return f"process_{kind}_c{concurrency}"


def worker_rss_mb(worker: dict[str, Any]) -> Any:
    return worker.get("vm_hwm_mb") or worker.get("vm_hwm_at_exit_mb") or worker.get("ru_maxrss_mb")


def find_values(tree: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in nested dicts and lists."""
    if isinstance(tree, dict):
        found = [tree[key]] if key in tree else []
        return found + [v for child in tree.values() for v in find_values(child, key)]
    if isinstance(tree, list):
        return [v for child in tree for v in find_values(child, key)]
    return []


def by_row(rows: dict[str, Any], field: str) -> dict[str, Any]:
    return {key: row[field] for key, row in rows.items() if row.get(field) is not None}


def summarize(results: dict[str, Any], backend: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if "enqueue_single" in results:
        summary["enqueue_single_per_s"] = results["enqueue_single"]["per_s"]
    if "enqueue_bulk" in results:
        summary["enqueue_bulk_per_s"] = results["enqueue_bulk"]["per_s"]
    rows = {k: v for k, v in results.items() if k.startswith("process_")}
    if rows:
        summary["process_per_s"] = by_row(rows, "per_s")
        for field in (
            "script_calls_per_job",
            "commands_per_job_total",
            "sql_transactions_per_job",
            "sql_statements_per_job",
        ):
            if values := by_row(rows, field):
                summary[field] = values
        summary["worker_peak_rss_mb"] = {k: worker_rss_mb(v["worker"]) for k, v in rows.items()}
    if cost := observability_cost(results):
        summary["observability_cost_percent"] = cost
    # The process target: the async no-op on the default retention (never a keep_all row).
    default_noop = {
        k: v["per_s"] for k, v in rows.items() if v["kind"] == "noop" and v.get("per_s")
    }
    best = max(default_noop, key=lambda k: default_noop[k]) if default_noop else None
    if backend != "sqlite" and best is not None:
        summary["process_best"] = {"row": best, "per_s": default_noop[best]}
    if "backlog" in results:
        backlog = results["backlog"]
        fields = (
            "n",
            "processed",
            "per_s",
            "drained",
            "script_calls_per_job",
            "commands_per_job_total",
            "worker_rss_mb",
        )
        summary["backlog"] = {k: backlog[k] for k in fields if backlog.get(k) is not None}
    if "latency" in results:
        lat = results["latency"]
        summary["latency_ms"] = {
            k: lat["enqueue_to_start_ms"][k] for k in ("p50", "p90", "p99", "max")
        }
        summary["latency_ms"] |= {
            f"enqueue_call_{k}": lat["enqueue_call_ms"][k] for k in ("p50", "p99")
        }
    if "idle" in results:
        summary["idle_worker_cpu_percent"] = results["idle"]["cpu_percent"]
    if "scaling" in results:
        summary["scaling_per_s"] = {k: v["per_s"] for k, v in results["scaling"]["runs"].items()}
    digests = find_values(results, "source_digest")
    digests = sorted(
        {d for ds in find_values(results, "worker_source_digests") for d in ds}.union(digests)
        - {None}
    )
    if len(digests) > 1:  # someone edited the source during the run: phases are not comparable
        summary["source_changed_during_run"] = digests
    summary["targets_met"] = targets_met(results, backend, default_noop, best, summary)
    return summary


def observability_cost(results: dict[str, Any]) -> dict[str, float]:
    """How much slower than the bare rows (no events, no statistics) the
    defaults and the monitored rows (defaults plus the job histograms) ran,
    in percent, from rows of this one run. With ``--rounds``, the median of
    each round's own comparison: a round runs its rows one after another, so
    a machine that speeds up or slows down between rounds (a shared VM's
    rates drift by a quarter) moves both sides of a comparison alike."""
    cost: dict[str, float] = {}

    def slower(row: str, bare: str) -> None:
        ran, base = results.get(row, {}), results.get(bare, {})
        if not (ran.get("per_s") and base.get("per_s")):
            return
        pairs = list(zip(ran.get("rounds_per_s", []), base.get("rounds_per_s", []), strict=False))
        if len(pairs) < 2:
            pairs = [(ran["per_s"], base["per_s"])]
        cost[row] = round(statistics.median(1 - a / b for a, b in pairs) * 100, 1)

    for key in results:
        if key.startswith("process_c") and key.endswith("_bare"):
            base = key.removesuffix("_bare")
            slower(base, key)
            slower(f"{base}_monitored", key)
    slower("enqueue_bulk", "enqueue_bulk_bare")
    return cost


def targets_met(
    results: dict[str, Any],
    backend: str,
    default_noop: dict[str, float],
    best: str | None,
    summary: dict[str, Any],
) -> dict[str, bool]:
    targets = TARGETS[backend]
    met: dict[str, bool] = {}
    if "process_per_s" in targets:
        if backend == "sqlite" and "process_c50" in default_noop:
            met["process_per_s"] = default_noop["process_c50"] >= targets["process_per_s"]
        elif backend != "sqlite" and best is not None:
            met["process_per_s"] = default_noop[best] >= targets["process_per_s"]
    for key in ("enqueue_single", "enqueue_bulk"):
        if key in results and f"{key}_per_s" in targets:
            met[f"{key}_per_s"] = results[key]["per_s"] >= targets[f"{key}_per_s"]
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        for p in ("p50", "p99"):
            if f"latency_{p}_ms" in targets:
                met[f"latency_{p}_ms"] = lat[p] <= targets[f"latency_{p}_ms"]
    rss = summary.get("worker_peak_rss_mb", {}).get("process_c50")
    if "worker_peak_rss_mb" in targets and rss is not None:
        met["worker_peak_rss_mb"] = rss <= targets["worker_peak_rss_mb"]
    return met


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "conveyor_source_digest": source_digest(),
    }
