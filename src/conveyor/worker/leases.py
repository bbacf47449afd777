"""Lease renewal on a thread of its own.

A worker's leases must not lapse while its jobs run, whatever the jobs do: an
``async`` job that blocks the event loop, or pure-Python code that keeps the
CPU for minutes, would starve renewals sent from the loop. ``LeaseKeeper``
renews from a daemon thread through the backend's ``extend_leases_blocking``
(its own connection), and hands the leases it finds lost back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from conveyor.backends.base import Backend
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.worker.health import StoreHealth

log = logging.getLogger("conveyor.worker")

RETRY_S = 0.5  # after a failed renewal, try again this soon

Lease = tuple[str, str]  # (job id, token)


class HeldLeases:
    """The leases a worker holds, shared between its loop and its keeper thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}  # token -> job id

    def hold(self, token: str, job_id: str) -> None:
        with self._lock:
            self._held[token] = job_id

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def snapshot(self) -> list[Lease]:
        with self._lock:
            return [(job_id, token) for token, job_id in self._held.items()]


class LeaseKeeper:
    """Every ``interval_s``, extends every held lease to now + ``lease_ms``;
    lost leases go to ``on_lost``, called on the event loop that started it."""

    def __init__(
        self,
        backend: Backend,
        leases: HeldLeases,
        *,
        interval_s: float,
        lease_ms: int,
        on_lost: Callable[[list[Lease]], None],
    ) -> None:
        self._backend = backend
        self._leases = leases
        self._interval_s = interval_s
        self._lease_ms = lease_ms
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._lingering = False  # renew what is held until nothing is, then stop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="conveyor-leases", daemon=True)
        self._health = StoreHealth()  # this thread's own: one warning per few seconds

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (waits for a renewal under way, bounded by its timeout)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def linger(self) -> None:
        """Stop once no lease is held any more (a daemon thread: the
        process's exit ends it too)."""
        self._lingering = True

    def _run(self) -> None:
        wait = self._interval_s
        while not self._stop.wait(wait):
            wait = self._interval_s
            held = self._leases.snapshot()
            if not held:
                if self._lingering:
                    return
                continue
            try:
                lost = self._backend.extend_leases_blocking(leases=held, lease_ms=self._lease_ms)
            except BackendUnavailable as exc:
                # Renew as soon as the store is back: others may reclaim soon after.
                wait = min(RETRY_S, self._interval_s)
                self._health.failed("lease renewal", exc)
                continue
            except BackendError as exc:
                wait = min(RETRY_S, self._interval_s)
                log.warning("lease renewal failed: %s", exc)
                continue
            except Exception:  # the keeper must outlive any surprise
                log.exception("lease renewal failed")
                continue
            self._health.ok()
            if lost and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._on_lost, lost)
