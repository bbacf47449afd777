"""The summary at the top of the bench's JSON, the targets, and the machine's facts."""

from __future__ import annotations

import os
import platform
import sqlite3
from typing import Any

from phases import PROCESS_PHASES
from workers import source_digest

TARGETS: dict[str, float] = {  # SQLite
    "process_per_s": 5_000,
    "enqueue_bulk_per_s": 50_000,
    "latency_p50_ms": 5.0,
}
REDIS_TARGETS: dict[str, float] = {
    "process_per_s": 10_000,  # one worker process, its best concurrency
    "enqueue_single_per_s": 6_000,
    "enqueue_bulk_per_s": 100_000,
    "latency_p50_ms": 0.5,
    "latency_p99_ms": 2.0,
    "worker_peak_rss_mb": 40,
}


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "conveyor_source_digest": source_digest(),
    }


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


def summarize(results: dict[str, Any], backend: str) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if "enqueue_single" in results:
        summary["enqueue_single_per_s"] = results["enqueue_single"]["per_s"]
    if "enqueue_bulk" in results:
        summary["enqueue_bulk_per_s"] = results["enqueue_bulk"]["per_s"]
    process = {
        c: results[f"process_c{c}"]["per_s"]
        for c in PROCESS_PHASES.values()
        if f"process_c{c}" in results
    }
    if process:
        summary["process_per_s"] = {f"concurrency_{k}": v for k, v in process.items()}
    best = max(process, key=lambda c: process[c]) if process else None
    if backend == "redis" and best is not None:
        summary["process_best"] = {"concurrency": best, "per_s": process[best]}
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        summary["latency_ms"] = {k: lat[k] for k in ("p50", "p90", "p99", "max")}
    if "process_c50" in results:
        summary["worker_peak_rss_mb"] = worker_rss_mb(results["process_c50"]["worker"])
    if backend == "redis":
        rss = {
            f"concurrency_{c}": worker_rss_mb(results[f"process_c{c}"]["worker"]) for c in process
        }
        if rss:
            summary["worker_peak_rss_mb_by_concurrency"] = rss
    if "idle" in results:
        summary["idle_worker_cpu_percent"] = results["idle"]["cpu_percent"]
    if "scaling" in results:
        summary["scaling_per_s"] = {k: v["per_s"] for k, v in results["scaling"]["runs"].items()}
    digests = find_values(results, "source_digest")
    digests = sorted({d for ds in find_values(results, "worker_source_digests") for d in ds}
                     .union(digests) - {None})  # fmt: skip
    if len(digests) > 1:  # someone edited the source during the run: phases are not comparable
        summary["source_changed_during_run"] = digests
    targets = REDIS_TARGETS if backend == "redis" else TARGETS
    met: dict[str, bool] = {}
    if backend == "redis":
        if best is not None:
            met["process_per_s"] = process[best] >= targets["process_per_s"]
    elif "process_c50" in results:
        met["process_per_s"] = results["process_c50"]["per_s"] >= targets["process_per_s"]
    if "enqueue_single" in results and "enqueue_single_per_s" in targets:
        met["enqueue_single_per_s"] = (
            results["enqueue_single"]["per_s"] >= targets["enqueue_single_per_s"]
        )
    if "enqueue_bulk" in results:
        met["enqueue_bulk_per_s"] = (
            results["enqueue_bulk"]["per_s"] >= targets["enqueue_bulk_per_s"]
        )
    if "latency" in results:
        lat = results["latency"]["enqueue_to_start_ms"]
        met["latency_p50_ms"] = lat["p50"] <= targets["latency_p50_ms"]
        if "latency_p99_ms" in targets:
            met["latency_p99_ms"] = lat["p99"] <= targets["latency_p99_ms"]
    if "worker_peak_rss_mb" in targets and summary.get("worker_peak_rss_mb") is not None:
        met["worker_peak_rss_mb"] = summary["worker_peak_rss_mb"] <= targets["worker_peak_rss_mb"]
    summary["targets_met"] = met
    return summary
