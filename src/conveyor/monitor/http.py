"""The monitor's HTTP endpoints, as one plain ASGI app.

==================  ==========================================================
``/metrics``        the Prometheus text (``conveyor.monitor.metrics``); 200
                    even while the store is down, with ``conveyor_store_up 0``
``/health/live``    200 while the process answers; touches no store
``/health/ready``   200 when the store answers within ``timeout_s`` (3 s),
                    else 503: a load balancer's or Kubernetes' readiness
``/workers/health`` JSON per queue: live workers, waiting jobs; 503 when the
                    store is down or a queue with waiting jobs (not paused)
                    has no live worker
==================  ==========================================================

Paths are relative to the ASGI ``root_path``, so the app mounts under any
prefix. Only GET and HEAD are served (405 otherwise); other paths get 404.
Every answer but ``/metrics`` is JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST

from conveyor.job import JobState
from conveyor.monitor.metrics import Monitor
from conveyor.monitor.snapshot import Snapshot, answered

__all__ = ["MonitorApp", "metrics_app", "workers_health"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = tuple[int, bytes, bytes]  # status, content type, body

JSON = b"application/json"


def metrics_app(monitor: Monitor) -> MonitorApp:
    """The ASGI app serving ``monitor``'s endpoints (the module's table)."""
    return MonitorApp(monitor)


class MonitorApp:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.routes: dict[str, Callable[[], Awaitable[Answer]]] = {
            "/metrics": self.metrics,
            "/health/live": self.live,
            "/health/ready": self.ready,
            "/workers/health": self.workers,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        root, path = scope.get("root_path", ""), scope["path"]
        if root and path.startswith(root):
            path = path[len(root) :]
        route = self.routes.get(path.rstrip("/") or "/")
        if route is None:
            status, kind, body = 404, JSON, _json({"error": f"no such endpoint: {path}"})
        elif scope["method"] not in ("GET", "HEAD"):
            status, kind, body = 405, JSON, _json({"error": f"{scope['method']} not allowed"})
        else:
            status, kind, body = await route()
        headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def metrics(self) -> Answer:
        return 200, CONTENT_TYPE_LATEST.encode(), await self.monitor.exposition()

    async def live(self) -> Answer:
        return 200, JSON, _json({"status": "ok"})

    async def ready(self) -> Answer:
        # queues(): a read every store must answer (SQLite's clock is the host's)
        queues = self.monitor.app.backend.queues()
        _, error = await answered(queues, self.monitor.snapshots.timeout_s)
        if error is not None:
            return 503, JSON, _json({"status": "down", "error": error})
        return 200, JSON, _json({"status": "ok"})

    async def workers(self) -> Answer:
        report = workers_health(await self.monitor.refresh())
        return (200 if report["ok"] else 503), JSON, _json(report)


def workers_health(snapshot: Snapshot) -> dict[str, Any]:
    """``/workers/health``'s report of a snapshot: ``ok``, ``store_up``, and
    per queue its live ``workers`` (paused ones not counted), ``waiting`` jobs,
    ``paused`` and ``ok``."""
    queues = []
    for queue in snapshot.queues:
        waiting = queue.counts.get(JobState.WAITING, 0)
        queues.append(
            {
                "queue": queue.name,
                "workers": queue.workers,
                "waiting": waiting,
                "paused": queue.paused,
                "ok": queue.workers > 0 or waiting == 0 or queue.paused,
            }
        )
    report: dict[str, Any] = {
        "ok": snapshot.up and all(q["ok"] for q in queues),
        "store_up": snapshot.up,
        "queues": queues,
        "workers": [
            {
                "id": w.id,
                "hostname": w.hostname,
                "pid": w.pid,
                "queues": w.queues,
                "active": w.active,
                "paused": w.paused,
                "last_seen_ms": w.last_seen_ms,
            }
            for w in snapshot.workers
        ],
    }
    if snapshot.error is not None:
        report["error"] = snapshot.error
    return report


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:  # nothing to start or stop: the app's connection opens at first use
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)
