r"""Every Redis key name Conveyor uses, built here and nowhere else.

All keys of a namespace (default ``conveyor``) share one hash tag,
``{conveyor}``, so every script's keys live in one Redis Cluster slot. That
keeps job ids unique across queues and lets ``get_job(id)`` work without a
queue name, exactly as on SQLite; the price is that one namespace lives on
one Cluster shard (run several namespaces to spread load).

Layout (``P`` is ``cv:{namespace}``):

- ``P:job:<id>``: hash, the job (one place for its state and every field).
- ``P:logs:<id>``: list of ``"<ms>:<message>"`` lines.
- ``P:q:<queue>:waiting``: zset of waiting jobs without a group; score orders
  by priority, then FIFO/LIFO.
- ``P:q:<queue>:gwaiting``: zset of waiting grouped jobs, all scored 0 so
  ordered by member: ``group \0 priority+seq digits \0 id`` (see lib.lua).
- ``P:q:<queue>:groups``: zset of the groups with waiting jobs, by turn.
- ``P:q:<queue>:gactive``: hash, group to its jobs active now.
- ``P:q:<queue>:rate``: zset of the queue's recent starts (token by time),
  kept while it has a rate limit; ``P:q:<queue>:grate``: its groups' recent
  starts, members ``group \0 time \0 token`` scored 0.
- ``P:q:<queue>:delayed``: zset; score is the due time (ms).
- ``P:q:<queue>:active``: zset; score is the lease expiry (ms).
- ``P:q:<queue>:<completed|failed|cancelled>``: zset; score is finished time.
- ``P:q:<queue>:marker``: list; one element wakes a blocked worker.
- ``P:q:<queue>:idle``: zset of the idle waits an enqueue may hand a job to,
  by when each registration lapses: members ``wake list \0 worker id \0 lease ms``.
- ``P:wake:<waiter>``: list one idle wait blocks on besides the markers, pushed
  by that waiter's own timer when a delayed job falls due, and by an enqueue
  that handed it a job (the claim's reply, JSON); short-lived.
- ``P:done:<task>:<state>``: zset of ``queue \0 id`` by finished time (retention).
- ``P:trim:<task>:<state>``: string, the token of the trim under way of that
  set (expires on its own if its trimmer dies).
- ``P:queues``: hash, queue name to paused flag.
- ``P:limits``: hash of limits, per scope (``queue``, or ``queue \0 group``
  with group ``*`` the default of every group): ``scope \0 a`` max active,
  ``scope \0 r`` ``max:window ms:per ms``, ``scope \0 h`` the end (ms) of
  a hold set by a rate-limited job. Scopes and their fields are built by
  ``limit_scope`` and ``limit_field`` below, and in the scripts by lib.lua's
  functions of the same names.
- ``P:turns``: hash, queue to the turn of its jobs without a group.
- ``P:seq``: counter for FIFO order.
- ``P:workers``: hash, worker id to its heartbeat JSON.
- ``P:worker_commands``: hash, worker id to the command left for it (``pause``,
  ``resume``), taken with its next heartbeat.
- ``P:outcomes:<id>``: hash, a flow parent's children's outcomes: child id to
  ``state \0 ignored \0 task \0 result \0 error``.
- ``P:outbox``: hash, child id to the outcome a finished child owes its parent,
  ``parent \0 state \0 policy \0 task \0 flow \0 result \0 error``, written in the
  child's own transition and applied by ``settle-10.lua``.
- ``P:events``: stream of job events (``conveyor.events``).
- ``P:stats:<hour>``: hash, the outcomes of one hour since the epoch, by
  minute, queue, task and metric (see lib.lua's ``tally``); expires on its own.
- ``P:totals``: hash, outcomes per queue and metric since the namespace began.
- ``P:dedup:<key>``: hash of a dedup key: ``job`` (the job created last with
  it), its ``queue`` and, for a throttle key, ``until`` (the window's end, ms,
  by the store's clock; the hash also expires then, in Redis's own time). A
  debounce key has no ``until`` and stays: one small hash per key.
"""

from __future__ import annotations

from conveyor.job import JobState

FINISHED = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)
_QUEUE_PARTS = frozenset({"gwaiting", "groups", "gactive", "rate", "grate", "idle"})


class Keys:
    def __init__(self, namespace: str = "conveyor") -> None:
        self.namespace = namespace
        self.prefix = f"cv:{{{namespace}}}"
        self.seq = f"{self.prefix}:seq"
        self.queues = f"{self.prefix}:queues"
        self.workers = f"{self.prefix}:workers"
        self.worker_commands = f"{self.prefix}:worker_commands"  # worker id -> pause|resume
        self.limits = f"{self.prefix}:limits"
        self.turns = f"{self.prefix}:turns"
        self.outbox = f"{self.prefix}:outbox"
        self.schedules = f"{self.prefix}:schedules"  # schedule id -> its JSON
        self.schedule_ticks = f"{self.prefix}:schedule_ticks"  # schedule id -> last tick fired
        self.schedule_counts = f"{self.prefix}:schedule_counts"  # schedule id -> ticks fired
        self.events = f"{self.prefix}:events"  # the stream of job events (conveyor.events)
        self.totals = f"{self.prefix}:totals"  # outcomes per queue, ever (conveyor.stats)
        self._states: dict[tuple[str, str], str] = {}

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def logs(self, job_id: str) -> str:
        return f"{self.prefix}:logs:{job_id}"

    def outcomes(self, job_id: str) -> str:
        return f"{self.prefix}:outcomes:{job_id}"

    def state(self, queue: str, state: JobState | str) -> str:
        key = self._states.get((queue, state))
        if key is None:  # hot path: built once per queue and state
            key = f"{self.prefix}:q:{queue}:{JobState(state).value}"
            if len(self._states) < 10_000:
                self._states[(queue, state)] = key
        return key

    def marker(self, queue: str) -> str:
        return f"{self.prefix}:q:{queue}:marker"

    def queue(self, queue: str, part: str) -> str:
        """A per-queue structure of groups, limits and idle waits: ``gwaiting``,
        ``groups``, ``gactive``, ``rate``, ``grate`` or ``idle``."""
        key = self._states.get((queue, part))
        if key is None:
            assert part in _QUEUE_PARTS, part
            key = f"{self.prefix}:q:{queue}:{part}"
            if len(self._states) < 10_000:
                self._states[(queue, part)] = key
        return key

    def wake(self, waiter: str) -> str:
        return f"{self.prefix}:wake:{waiter}"

    def done(self, task: str, state: JobState | str) -> str:
        return f"{self.prefix}:done:{task}:{JobState(state).value}"

    def trim_lock(self, task: str, state: JobState | str) -> str:
        return f"{self.prefix}:trim:{task}:{JobState(state).value}"

    def stats(self, hour: int) -> str:
        """The outcomes of an hour (since the epoch) per minute (conveyor.stats)."""
        return f"{self.prefix}:stats:{hour}"

    def dedup(self, key: str) -> str:
        return f"{self.prefix}:dedup:{key}"


def limit_scope(queue: str, group: str | None) -> str:
    """A limit's scope in the limits hash: the queue's own (``group`` None) or
    one of its groups' (group ``*``, ``EVERY_GROUP``: every group's default)."""
    return queue if group is None else f"{queue}\0{group}"


def limit_field(scope: str, field: str) -> str:
    """A field of the limits hash: ``a`` max active, ``r`` rate, ``h`` hold."""
    return f"{scope}\0{field}"


def parse_limit_field(name: str) -> tuple[str, str | None, str]:
    """The queue, group (None: the queue's own) and field of a limits hash
    field (names have no NUL: see ``validate.name``)."""
    scope, _, field = name.rpartition("\0")
    queue, _, group = scope.partition("\0")
    return queue, group or None, field
