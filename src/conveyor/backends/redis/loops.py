"""Dropping the asyncio clients of an event loop the app has left.

redis-py's asyncio clients belong to the loop they connected on; when the app
is next used on another loop (``asyncio.run`` twice), the old loop is usually
closed, and ``aclose()`` cannot run there. Left to the garbage collector,
their sockets would be closed with ``ResourceWarning`` ("unclosed transport",
"Unclosed RedisCluster client"). So each connection's transport is aborted,
and where the old loop is closed (it cannot finish the abort) its socket is
closed here, as that loop would have done; a loop left open finishes the
abort if it runs again.

Limits: this reaches into redis-py's pools (``_available_connections``,
``_in_use_connections``, a Cluster node's ``_connections``, a connection's
``_reader`` and ``_writer``, a Cluster client's ``_initialize``) and into
asyncio's socket transport (``_sock``, and ``_ssl_protocol`` under TLS), as
in redis-py 8 and CPython 3.11; the conformance suite's
``test_event_loops.py`` (and the TLS test) fail on any warning should that
change. On other event loops (uvloop) the transport is only aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.cluster import RedisCluster

__all__ = ["drop"]


def drop(client: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Close every connection of ``client`` (a ``Redis`` or ``RedisCluster``
    made on ``loop``, which no longer runs) without awaiting anything."""
    for connection in _connections(client):
        writer = getattr(connection, "_writer", None)
        connection._reader = connection._writer = None  # as redis-py's disconnect leaves it
        if writer is not None:
            _close_transport(writer.transport, loop)
    if isinstance(client, RedisCluster):
        client._initialize = True  # what aclose() sets: closed, nothing left to warn about


def _connections(client: Any) -> list[Any]:
    """Every connection of the client's pools (none found if redis-py changed
    them: then they are left to the garbage collector, with its warnings)."""
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        found = (
            *getattr(manager, "nodes_cache", {}).values(),
            *getattr(manager, "startup_nodes", {}).values(),
        )
        nodes = {id(node): node for node in found}
        return [c for node in nodes.values() for c in getattr(node, "_connections", ())]
    pool = client.connection_pool
    return [*getattr(pool, "_available_connections", ()), *getattr(pool, "_in_use_connections", ())]


def _close_transport(transport: Any, loop: asyncio.AbstractEventLoop) -> None:
    # Under TLS the socket is held by the transport beneath the TLS protocol.
    raw = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None) or transport
    with contextlib.suppress(RuntimeError):  # a closed loop cannot schedule the rest
        transport.abort()
    if loop.is_closed():
        sock = getattr(raw, "_sock", None)
        if sock is not None:
            raw._sock = None
            sock.close()
