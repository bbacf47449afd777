"""The conformance suite: every contract test runs against every backend.

Every test here runs on each store of ``CONFORMANCE_STORES`` (tests/conftest.py,
which has the one ``store_url`` fixture); a new backend joins by a name there
and a fixture ``<name>_url`` that yields its URL. Time is moved with ``app.clock``
(an offset on the store's clock), never slept through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from conveyor import Conveyor
from conveyor.backends.values import ClaimedJob, QueueSlots


async def claim(
    app: Conveyor,
    queues: Sequence[str] = ("default",),
    *,
    limit: int = 10,
    worker: str = "w1",
    lease_ms: int = 30_000,
) -> list[ClaimedJob]:
    return await app.backend.claim(
        slots=[QueueSlots(tuple(queues), limit)], worker_id=worker, lease_ms=lease_ms
    )


async def extend(app: Conveyor, leases: Sequence[tuple[str, str]], lease_ms: int) -> list[Any]:
    """Renew leases as a worker's lease keeper does: from a thread of its own."""
    return await asyncio.to_thread(
        lambda: app.backend.extend_leases_blocking(leases=leases, lease_ms=lease_ms)
    )


def count_claims(app: Conveyor) -> list[int]:
    """Count the app's claims from now on (``[n]``): the real backend's, wrapped."""
    claims = [0]
    real = app.backend.claim

    async def counting(**kwargs: Any) -> Any:
        claims[0] += 1
        return await real(**kwargs)

    app.backend.claim = counting  # type: ignore[method-assign]
    return claims
