"""Serving the monitor's endpoints with uvicorn, alone or beside a worker.

``listen`` binds the socket first, so a port in use is an error before
anything starts; ``http_server`` gives a uvicorn server on it, which leaves
the signals to its host: beside a worker (``conveyor worker --metrics-port``)
it is stopped once the worker is done, alone (``conveyor metrics``) on the
first SIGTERM or SIGINT.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from conveyor.monitor.http import MonitorApp

__all__ = ["http_server", "listen"]


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``; ``OSError`` when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


class _QuietServer(uvicorn.Server):
    """A server that leaves the signals alone: uvicorn's own handlers would
    replace the host's, and raise the signal again once it has stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_server(app: MonitorApp) -> uvicorn.Server:
    """A uvicorn server of ``app``: ``await server.serve([sock])`` runs it
    until ``server.should_exit = True``."""
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    return _QuietServer(config)
