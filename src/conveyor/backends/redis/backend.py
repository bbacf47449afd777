"""The Redis job store, part two: reading and managing jobs and queues.

The module docstring of ``transitions.py`` describes the store as a whole:
URLs, scripts on server time, peek-then-verify claims and blocking waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from conveyor.backends.redis.connection import mapped_errors
from conveyor.backends.redis.keys import limit_field, limit_scope, parse_limit_field
from conveyor.backends.redis.record import FIELDS, job_from_fields, retention_member
from conveyor.backends.redis.transitions import BATCH, RedisTransitions
from conveyor.backends.rows import schedules_from
from conveyor.backends.values import QueueInfo, WorkerInfo
from conveyor.cron import Schedule
from conveyor.job import ChildOutcome, Job, JobState, LogEntry, from_ms
from conveyor.limits import Limits, Rate

__all__ = ["RedisBackend"]


class RedisBackend(RedisTransitions):
    # -- inspection ------------------------------------------------------------

    async def get_job(self, *, job_id: str) -> Job | None:
        jobs = await self._jobs([job_id])
        return jobs[0] if jobs else None

    async def _jobs(self, job_ids: Sequence[str]) -> list[Job]:
        if self._client is None:
            await self.connect()
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), FIELDS)
            rows = await pipe.execute()
        found = zip(job_ids, rows, strict=True)
        return [job_from_fields(row, job_id)[0] for job_id, row in found if row[0] is not None]

    async def get_logs(self, *, job_id: str) -> list[LogEntry]:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            lines = await self.client.lrange(self.keys.logs(job_id), 0, -1)
        entries = []
        for line in lines:
            at, _, message = line.decode().partition(":")
            entries.append(LogEntry(at=from_ms(int(at)), message=message))
        return entries

    async def list_jobs(
        self, *, queue: str | None, state: JobState, offset: int, limit: int
    ) -> list[Job]:
        queues = [queue] if queue is not None else await self._queue_names()
        newest_first = state.finished
        picked: list[tuple[float, str]] = []
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zrange(
                    self.keys.state(q, state),
                    0,
                    offset + limit - 1,
                    desc=newest_first,
                    withscores=True,
                )
            for ranked in await pipe.execute():
                picked += [(s, m.decode()) for m, s in ranked]
        if state == JobState.WAITING:
            picked += await self._grouped_waiting(queues, offset + limit)
        # The order ZRANGE has (REV also reverses the member order of equal
        # scores), so every page is a slice of the same order.
        picked.sort(reverse=newest_first)
        return await self._jobs([job_id for _, job_id in picked[offset : offset + limit]])

    async def _grouped_waiting(self, queues: Sequence[str], most: int) -> list[tuple[float, str]]:
        """The first ``most`` waiting jobs of every group, scored as waiting jobs
        without a group are (priority, then FIFO), to merge with them."""
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.zrange(self.keys.queue(q, "groups"), 0, -1)
            groups = await pipe.execute()
        wanted = [
            (q, name.decode(), most)
            for q, names in zip(queues, groups, strict=True)
            for name in names
        ]
        return [(c.score, c.id) for jobs in await self._first_of_groups(wanted) for c in jobs]

    async def queues(self) -> list[QueueInfo]:
        names = await self._queue_names()
        async with mapped_errors():
            paused = await self.client.hgetall(self.keys.queues)
            async with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    for state in JobState:
                        pipe.zcard(self.keys.state(name, state))
                    pipe.zcard(self.keys.queue(name, "gwaiting"))
                counts = await pipe.execute()
        states = list(JobState)
        width = len(states) + 1
        infos = []
        for i, name in enumerate(names):
            per_state = {s: counts[i * width + j] for j, s in enumerate(states)}
            per_state[JobState.WAITING] += counts[i * width + len(states)]  # grouped ones
            infos.append(
                QueueInfo(name=name, paused=paused.get(name.encode()) == b"1", counts=per_state)
            )
        return infos

    async def child_outcomes(self, *, parent_id: str) -> list[ChildOutcome]:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            stored = await self.client.hgetall(self.keys.outcomes(parent_id))
        outcomes = []
        for child, value in stored.items():
            state, ignored, task, result, error = value.split(b"\0", 4)
            outcomes.append(
                ChildOutcome(
                    id=child.decode(),
                    task=task.decode(),
                    state=JobState(state.decode()),
                    result=msgspec.json.decode(result) if result else None,
                    error=error.decode() or None,
                    ignored=ignored == b"1",
                )
            )
        return outcomes

    async def workers(self, *, seen_within_ms: int) -> list[WorkerInfo]:
        if self._client is None:
            await self.connect()
        since = await self._now() - seen_within_ms
        async with mapped_errors():
            raw = await self.client.hgetall(self.keys.workers)
        infos = [msgspec.json.decode(v, type=WorkerInfo) for v in raw.values()]
        return sorted((w for w in infos if w.last_seen_ms >= since), key=lambda w: w.id)

    # -- administration ----------------------------------------------------------

    async def set_paused(self, *, queue: str, paused: bool) -> None:
        if self._client is None:
            await self.connect()
        async with mapped_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.hset(self.keys.queues, queue, "1" if paused else "0")
            if not paused:
                pipe.rpush(self.keys.marker(queue), "1")
            await pipe.execute()

    async def set_limits(
        self,
        *,
        queue: str,
        group: str | None,
        max_active: int | msgspec.UnsetType | None = msgspec.UNSET,
        rate: Rate | msgspec.UnsetType | None = msgspec.UNSET,
    ) -> None:
        if self._client is None:
            await self.connect()
        scope = limit_scope(queue, group)
        changes: dict[str, str | None] = {}
        if max_active is not msgspec.UNSET:
            changes["a"] = None if max_active is None else str(max_active)
        if rate is not msgspec.UNSET:
            changes["r"] = None if rate is None else f"{rate.max}:{rate.window_ms}:{rate.per_ms}"
        async with mapped_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.keys.queues, queue, "0")  # the queue is known even if empty
            for field, value in changes.items():
                if value is None:
                    pipe.hdel(self.keys.limits, limit_field(scope, field))
                else:
                    pipe.hset(self.keys.limits, limit_field(scope, field), value)
            pipe.rpush(self.keys.marker(queue), "1")
            await pipe.execute()

    async def get_limits(self, *, queue: str) -> dict[str | None, Limits]:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            stored = await self.client.hgetall(self.keys.limits)
        fields: dict[str | None, dict[str, str]] = {}
        for raw, value in stored.items():
            of, group, field = parse_limit_field(raw.decode())
            if of == queue:
                fields.setdefault(group, {})[field] = value.decode()
        found = {}
        for scope, values in sorted(fields.items(), key=lambda item: item[0] or ""):
            rate = None
            if "r" in values:
                most, _, per_ms = values["r"].split(":")
                rate = Rate(int(most), int(per_ms))
            active = values.get("a")
            limits = Limits(max_active=None if active is None else int(active), rate=rate)
            if not limits.empty:  # a scope with only a hold ('h') has no limits
                found[scope] = limits
        return found

    async def retry_jobs(self, *, job_ids: Sequence[str] | None, queue: str | None) -> int:
        if job_ids is not None:
            return await self._retry(job_ids, allow_cancelled=True)
        moved = 0
        for q in [queue] if queue is not None else await self._queue_names():
            while True:  # bounded batches; each job moves in its own script
                async with mapped_errors():
                    failed = await self.client.zrange(self.keys.state(q, "failed"), 0, BATCH - 1)
                if not failed:
                    break
                done = await self._retry([m.decode() for m in failed], allow_cancelled=False)
                moved += done
                if done == 0:  # nothing movable (changed under us): do not spin
                    break
        return moved

    async def _retry(self, job_ids: Sequence[str], *, allow_cancelled: bool) -> int:
        k = self.keys

        async def one(job_id: str) -> bool:
            identity = await self._identity(job_id)
            if identity is None:
                return False
            q, task = identity
            keys = [
                k.job(job_id),
                k.state(q, "failed"),
                k.state(q, "cancelled"),
                k.state(q, "waiting"),
                k.marker(q),
                k.done(task, "failed"),
                k.done(task, "cancelled"),
                k.queue(q, "gwaiting"),
                k.queue(q, "groups"),
                k.state(q, "waiting_children"),
            ]
            args = [self._offset, retention_member(q, job_id), int(allow_cancelled), job_id]
            return await self._fenced("retry", keys, args)

        return sum(await asyncio.gather(*(one(job_id) for job_id in job_ids)))

    async def cancel(self, *, job_id: str) -> bool:
        return await self._cancel(job_id, reason="cancelled")

    async def remove(self, *, job_id: str) -> bool:
        identity = await self._identity(job_id)
        return identity is not None and await self._remove(job_id, *identity)

    async def promote(self, *, job_id: str) -> bool:
        identity = await self._identity(job_id)
        if identity is None:
            return False
        queue = identity[0]
        k = self.keys
        keys = [
            k.state(queue, "delayed"),
            k.state(queue, "waiting"),
            k.marker(queue),
            k.queue(queue, "gwaiting"),
            k.queue(queue, "groups"),
            k.job(job_id),
        ]
        promoted, _ = await self._run("promote", keys, [self._offset, 1, job_id])
        return bool(promoted)

    async def clean(
        self, *, queue: str | None, state: JobState, older_than_ms: int, keep: int, limit: int
    ) -> int:
        cutoff = await self._now() - older_than_ms
        removed = 0
        for q in [queue] if queue is not None else await self._queue_names():
            key = self.keys.state(q, state)
            while removed < limit:
                async with mapped_errors():  # newest first: skip the newest `keep` and the young
                    young = await self.client.zcount(key, f"({cutoff}", "+inf")
                    old = await self.client.zrange(
                        key,
                        max(keep, young),
                        max(keep, young) + min(BATCH, limit - removed) - 1,
                        desc=True,
                    )
                if not old:
                    break
                ids = [m.decode() for m in old]
                tasks = [i[1] if i else "" for i in await self._identities(ids)]
                gone = await asyncio.gather(
                    *(
                        self._remove(i, q, t, state=state.value, latest=cutoff)
                        for i, t in zip(ids, tasks, strict=True)
                    )
                )
                removed += sum(gone)
                if not any(gone):
                    break
        return removed

    # -- schedules ---------------------------------------------------------------

    async def save_schedule(self, *, schedule: Schedule) -> None:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            await self.client.hset(self.keys.schedules, schedule.id, msgspec.json.encode(schedule))

    async def remove_schedule(self, *, schedule_id: str) -> bool:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            removed = await self.client.hdel(self.keys.schedules, schedule_id)
            await self.client.hdel(self.keys.schedule_ticks, schedule_id)
        return bool(removed)

    async def schedules(self) -> list[tuple[Schedule, int | None]]:
        if self._client is None:
            await self.connect()
        async with mapped_errors():
            specs = await self.client.hgetall(self.keys.schedules)
            ticks = await self.client.hgetall(self.keys.schedule_ticks) if specs else {}
        return schedules_from(
            (
                key.decode(errors="replace"),
                specs[key],
                None if ticks.get(key) is None else int(ticks[key]),
            )
            for key in sorted(specs)
        )

    async def mark_tick(self, *, schedule_id: str, tick_ms: int) -> None:
        await self._run("tick", [self.keys.schedule_ticks], [schedule_id, tick_ms])

    async def now_ms(self) -> int:
        return await self._now()
