"""Every Redis key name Conveyor uses, built here and nowhere else.

All keys of a namespace (default ``conveyor``) share one hash tag,
``{conveyor}``, so every script's keys live in one Redis Cluster slot. That
keeps job ids unique across queues and lets ``get_job(id)`` work without a
queue name, exactly as on SQLite; the price is that one namespace lives on
one Cluster shard (run several namespaces to spread load).

Layout (``P`` is ``cv:{namespace}``):

- ``P:job:<id>``: hash, the job (one place for its state and every field).
- ``P:logs:<id>``: list of ``"<ms>:<message>"`` lines.
- ``P:q:<queue>:waiting``: zset; score orders by priority, then FIFO/LIFO.
- ``P:q:<queue>:delayed``: zset; score is the due time (ms).
- ``P:q:<queue>:active``: zset; score is the lease expiry (ms).
- ``P:q:<queue>:<completed|failed|cancelled>``: zset; score is finished time.
- ``P:q:<queue>:marker``: list; one element wakes a blocked worker.
- ``P:done:<task>:<state>``: zset of ``queue \\0 id`` by finished time (retention).
- ``P:queues``: hash, queue name to paused flag.
- ``P:seq``: counter for FIFO order.
- ``P:workers``: hash, worker id to its heartbeat JSON.
- ``P:dedup:<key>``: hash of a dedup key: ``job`` (the job created last with
  it), its ``queue`` and, for a throttle key, ``until`` (the window's end, ms,
  by the store's clock; the hash also expires then, in Redis's own time). A
  debounce key has no ``until`` and stays: one small hash per key.
"""

from __future__ import annotations

from conveyor.job import JobState

FINISHED = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class Keys:
    def __init__(self, namespace: str = "conveyor") -> None:
        self.namespace = namespace
        self.prefix = f"cv:{{{namespace}}}"
        self.seq = f"{self.prefix}:seq"
        self.queues = f"{self.prefix}:queues"
        self.workers = f"{self.prefix}:workers"
        self.queue_limits = f"{self.prefix}:queue_limits"  # queue -> max active at once
        self.schedules = f"{self.prefix}:schedules"  # schedule id -> its JSON
        self.schedule_ticks = f"{self.prefix}:schedule_ticks"  # schedule id -> last tick fired
        self._states: dict[tuple[str, str], str] = {}

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def logs(self, job_id: str) -> str:
        return f"{self.prefix}:logs:{job_id}"

    def state(self, queue: str, state: JobState | str) -> str:
        key = self._states.get((queue, state))
        if key is None:  # hot path: built once per queue and state
            key = f"{self.prefix}:q:{queue}:{JobState(state).value}"
            if len(self._states) < 10_000:
                self._states[(queue, state)] = key
        return key

    def marker(self, queue: str) -> str:
        return f"{self.prefix}:q:{queue}:marker"

    def done(self, task: str, state: JobState | str) -> str:
        return f"{self.prefix}:done:{task}:{JobState(state).value}"

    def dedup(self, key: str) -> str:
        return f"{self.prefix}:dedup:{key}"
