"""A worker's slots: how many more jobs it may start, per pool of queues.

``WorkerSettings.pools`` gives each queue with a count of its own a pool
alone, and the other queues one pool of ``concurrency`` slots together. A
pool's slot is taken from a claim until its job's code ends. While a job's
outcome is being written its code no longer runs, so its slot counts free
and a claim may overlap the write, up to one such claim per slot. A sync job
whose attempt ended (timeout, cancel) while its thread runs on keeps its slot
until the thread returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.backends.values import QueueSlots

__all__ = ["Slots"]


class Slots:
    """Counts per pool; one worker's, used from its event loop only."""

    def __init__(self, pools: Sequence[tuple[tuple[str, ...], int]]) -> None:
        self.pools = list(pools)
        self._pool_of = {queue: i for i, (queues, _) in enumerate(self.pools) for queue in queues}
        self._running = [0] * len(self.pools)  # jobs claimed and not yet ended
        self._finishing = [0] * len(self.pools)  # of those, outcomes being written
        self._threads = [0] * len(self.pools)  # threads of ended sync jobs still running

    def pool_of(self, queue: str) -> int:
        return self._pool_of[queue]

    def started(self, pool: int) -> None:
        self._running[pool] += 1

    def finishing(self, pool: int) -> None:
        self._finishing[pool] += 1

    def ended(self, pool: int, *, finishing: bool) -> None:
        self._running[pool] -= 1
        if finishing:
            self._finishing[pool] -= 1

    def thread_outlives(self, pool: int) -> None:
        self._threads[pool] += 1

    def thread_ended(self, pool: int) -> None:
        self._threads[pool] -= 1

    @property
    def outliving(self) -> int:
        """Threads of ended sync jobs still running, in all pools."""
        return sum(self._threads)

    def free(self) -> list[QueueSlots]:
        """A claim's room: the pools with a free slot, each with how many."""
        rooms = []
        for i, (queues, slots) in enumerate(self.pools):
            running, threads = self._running[i], self._threads[i]
            free = min(
                slots - (running - self._finishing[i] + threads), 2 * slots - running - threads
            )
            if free > 0:
                rooms.append(QueueSlots(queues, free))
        return rooms
