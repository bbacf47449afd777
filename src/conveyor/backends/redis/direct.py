"""Script calls on a connection held for them, past redis-py's command path.

A lone script call (a single enqueue, an idle worker's claim) is one round
trip, and on a single node redis-py's ``execute_command`` costs about as
much again around it: taking a connection from the pool and giving it back,
its retry wrapper, its observability hooks. Measured here on loopback: a
``PING`` through the client 90 us, the same on a held connection 44 us.
So a lone call sends its packed ``EVALSHA`` on one connection kept out of
the pool for that, reads the reply, and does what the client would: reload
a script the server lost (NOSCRIPT) and retry a broken connection twice
(every write is fenced by a token or idempotent by job id, so a repeat
changes nothing twice). The connection is redis-py's own (``wire.py``), so
TLS, unix sockets, AUTH and SELECT are as configured; one call at a time.

Not for a Cluster: its client routes by slot and follows MOVED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.commands.core import AsyncScript

__all__ = ["DirectCalls"]

NOSCRIPT_TRIES = 5
RETRIES = 2  # quick retries of a call whose connection broke, as the client's own
RETRY_DELAY_S = 0.05


class DirectCalls:
    """One held connection of ``client``'s pool, one call at a time (``busy``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._connection: Any = None
        self.busy = False

    async def call(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA`` of ``script``; redis-py's errors as the client raises them."""
        self.busy = True
        try:
            broken = lost = 0
            while True:
                if self._connection is None:
                    self._connection = await self._client.connection_pool.get_connection()
                connection = self._connection
                command = connection.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
                try:
                    await connection.send_packed_command(command, check_health=False)
                    return await connection.read_response()  # disconnects on any error
                except redis_errors.NoScriptError:
                    # Restarts, failovers, SCRIPT FLUSH in a loop: load it and try again.
                    lost += 1
                    if lost >= NOSCRIPT_TRIES:
                        raise
                    await self._client.script_load(script.script)
                except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
                    broken += 1
                    if broken > RETRIES:
                        raise
                    await asyncio.sleep(RETRY_DELAY_S * broken)  # it reconnects on the next send
        finally:
            self.busy = False
