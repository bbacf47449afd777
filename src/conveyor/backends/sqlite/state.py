"""What the claim, the idle wait and the batched actions take of the backend:
its shared state, as a protocol (``SQLiteBackend`` is the one that has it),
so that these modules need not import the backend that imports them."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Concatenate, NamedTuple, ParamSpec, Protocol, TypeVar

from conveyor.clock import Clock

__all__ = ["NO_CLAIM", "LastClaim", "State"]

P = ParamSpec("P")
T = TypeVar("T")


class LastClaim(NamedTuple):
    """What the last claim of one set of queues saw."""

    version: int | None  # the data version just before it (None: not read)
    retry_at: int | None  # when a limit that held jobs back frees
    held: dict[str, int]  # scopes held back (``limits.scope_key``) until when
    short: bool  # it found fewer jobs than it asked for


NO_CLAIM = LastClaim(None, None, {}, True)


class State(Protocol):
    """``write`` runs a transaction on the writer thread, ``read`` a read on
    a reader's; ``wakeup`` ends this
    process's idle waits; ``last_work`` is when work was last seen
    (``time.monotonic``); ``last_claim`` what the last claim of each set of
    queues saw."""

    clock: Clock
    wakeup: asyncio.Event
    last_work: float
    last_claim: dict[tuple[str, ...], LastClaim]

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    async def read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T: ...

    async def poll_connection(self) -> sqlite3.Connection: ...

    def data_version(self) -> int | None: ...
