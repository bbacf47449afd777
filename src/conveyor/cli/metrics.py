"""``conveyor metrics``: serve an app's metrics and health checks; and the
``--metrics-port`` of ``conveyor worker``, which serves them beside a worker.

Both bind their socket before anything else starts, so a port in use exits
2 at once with one line. The endpoints are those of ``conveyor.monitor.http``;
neither checks who asks, so they bind 127.0.0.1 unless told otherwise
(``--metrics-host 0.0.0.0`` in a container, for the scraper to reach them).
They need the ``metrics`` extra (``pip install 'conveyor[metrics]'``).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import TYPE_CHECKING

import click

from conveyor.app import Conveyor
from conveyor.cli.common import CliError, app_from, app_option, refuse_missing_store, url_option

if TYPE_CHECKING:
    import uvicorn

__all__ = ["DEFAULT_PORT", "metrics", "metrics_server"]

DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporter serves on


def metrics_server(app: Conveyor, host: str, port: int) -> tuple[uvicorn.Server, socket.socket]:
    """A server of ``app``'s monitor (its job histograms added to the app)
    and its socket, bound already: ``await server.serve([sock])``."""
    try:
        from conveyor.monitor import Monitor, metrics_app
        from conveyor.monitor.serving import http_server, listen
    except ImportError as exc:
        raise CliError(
            f"metrics need the metrics extra (pip install 'conveyor[metrics]'): {exc}"
        ) from None
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    except OverflowError as exc:  # a port past 65535
        raise CliError(f"cannot listen on {host}:{port}: {exc}") from None
    server = http_server(metrics_app(Monitor(app)))
    return server, sock


@click.command()
@app_option
@url_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True)
def metrics(app_path: str | None, url: str | None, host: str, port: int) -> None:
    """Serve /metrics, /health/live, /health/ready and /workers/health until
    SIGTERM or SIGINT."""
    app = app_from(app_path, url)
    refuse_missing_store(app)  # only reads: a mistyped path is not a new store
    server, sock = metrics_server(app, host, port)
    click.echo(f"serving metrics on http://{host}:{sock.getsockname()[1]}/metrics", err=True)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, setattr, server, "should_exit", True)
        try:  # the store is opened at the first scrape: a store down is reported, not fatal
            await server.serve([sock])
        finally:
            await app.close()

    asyncio.run(serve())
