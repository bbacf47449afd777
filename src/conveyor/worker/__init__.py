"""The worker: claims jobs, runs them, and reports how each attempt ended.

In this package: ``loop.py`` (``Worker``: the claim loop, shutdown),
``execution.py`` (one attempt: run, timeout, settle, retry policy),
``chores.py`` (reclaim, heartbeat, schedules, outcomes, trims),
``leases.py``, ``health.py``, ``slots.py``, ``trimming.py``,
``sandbox.py`` and ``sandbox_child.py``, and ``logs.py``.

One asyncio loop per process runs as many jobs as it has slots (per queue,
``slots.py``): ``async def`` tasks on the loop, plain functions on a
thread pool with a thread per slot. Finished jobs beyond their task's
retention are trimmed apart from the completions (``trimming.py``). The
worker holds the policy: whether a failure is retried and after how long (the
job's backoff), what a timeout means, and when a lease counts as lost. Every
state change is one backend call carrying the lease token.

Timeouts: an async job is cancelled at its timeout. A sync job cannot be
stopped from outside its thread; at its timeout the attempt is failed and the
thread's late result is dropped by fencing. A hard stop needs
``sandbox=True``: the job runs in a child process whose process group is
killed at its timeout or cancel (``sandbox.py``).

Leases are renewed every 2 s (a third of a shorter lease) from a thread of
the worker's own with its own connection (``LeaseKeeper``), so a job that
blocks the event loop or hogs the CPU in pure Python keeps its lease while
its worker lives. A C call that holds the GIL stops every thread; the lease
(30 s by default) outlasts a few seconds of that. A renewal is also how a
worker learns that a running job was cancelled.

Every worker checks the whole store for stalled jobs every
``reclaim_interval_s``, in two phases: it notes the expired leases, and at
its next check reclaims those still expired with the same expiry (nobody
renewed them). So a dead worker's jobs are back within lease + 2 checks, and
after a store outage (when every lease looks expired) nothing is reclaimed
until live workers have had a renewal interval to renew. Each reclaimed job
gets a ``stalled: ...`` line in its log; one that stalls more than
``max_stalls`` times (default 1) fails with error ``stalled``.

A job that raises ``RateLimited`` goes back to ``waiting`` with no attempt
spent, holding its queue or group in the same step. A flow's parent gets its
children's outcomes before it runs (a chain step its first argument), and a
child that finished hands its outcome to its parent at once; every worker
also applies any outcome left over about once a second (``conveyor.flow``).

Shutdown (``stop()``, SIGTERM, SIGINT): no new claims; running jobs get
``shutdown_grace_s`` to finish; whatever still runs then is cancelled and its
job released back to ``waiting`` (no attempt, no stall counted), but for a
sync job whose thread still runs: it keeps its lease, renewed (after ``run()``
has returned) until the thread ends, so it never runs elsewhere meanwhile.
"""

from conveyor.worker.loop import Worker

__all__ = ["Worker"]
