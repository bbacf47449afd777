"""Script calls made during one turn of the event loop, sent to Redis as one
pipeline: many jobs finishing together cost one round trip, not one each.
Also where driver errors become Conveyor's."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence, Set
from typing import Any

from redis import exceptions as redis_errors
from redis.commands.core import AsyncScript

from conveyor.backends.redis.scripts import TAIL_ARGS, TAIL_KEYS
from conveyor.errors import BackendError, BackendUnavailable

MAX_BATCH = 1000  # calls in one pipeline at most
IN_FLIGHT = 2  # pipelines out at once

Pending = tuple[AsyncScript, Sequence[str], Sequence[Any], "asyncio.Future[Any]"]

Call = Callable[[AsyncScript, Sequence[str], Sequence[Any]], Awaitable[Any]]


class Batch:
    """Script calls sent as pipelines, at most ``IN_FLIGHT`` out at a time.

    Calls made while pipelines are out wait and then go together, so batches
    grow with load: many jobs finishing together cost one round trip, not one
    each, and one connection, not one each. Two in flight let a claim travel
    while a batch of completions is out. A call whose script the
    server lost (NOSCRIPT) is retried on its own, which reloads the script.

    ``merged`` names the scripts (by SHA) that take their items as repeated
    groups of arguments (of the size given) after one shared first argument,
    with each item's keys in the same order, and answer one value per item:
    pending calls to such a script with the same first argument become one
    call, and each caller gets its own items' answers, as if it had called
    alone (one script call instead of many: less work for Redis and for the
    client).
    """

    def __init__(
        self,
        client: Any,
        single: Call,
        merged: Mapping[str, int] | None = None,
        tailed: Set[str] = frozenset(),
    ) -> None:
        self._client = client
        self._single = single
        self._merged = dict(merged or {})
        self._tailed = tailed  # scripts whose last keys and arguments are every call's own
        self._pending: list[Pending] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._senders = 0  # tasks sending pipelines (each sends one at a time)
        self._direct = 0  # lone calls out, not in a pipeline

    async def run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """A lone call goes straight out (a pipeline costs more for one); once
        anything is pending or in flight, calls join the next pipeline."""
        if self._pending or self._senders or self._direct:
            return await self.call(script, keys, args)
        self._direct += 1
        try:
            return await self._single(script, keys, args)
        finally:
            self._direct -= 1

    def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if self._senders < IN_FLIGHT:
            self._senders += 1
            loop.call_soon(lambda: self._spawn(self._drain()))  # after this turn's calls
        return future

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference until it ends
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._send()
        finally:
            self._senders -= 1

    async def _send(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        for attempt in range(2):
            try:
                results = await self._pipeline(batch)
            except Exception as exc:  # every caller of the batch hears about it
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(map_error(exc))
                return
            lost = _deliver(batch, results)
            if not lost:
                return
            if attempt == 0:  # reload once, then send those calls again together
                with contextlib.suppress(redis_errors.RedisError):
                    for script in {call[0] for call in lost}:
                        await self._client.script_load(script.script)
            batch = lost
        for script, keys, args, future in batch:  # still missing: one at a time
            self._spawn(_settle(future, self._single(script, keys, args)))

    async def _pipeline(self, batch: Sequence[Pending]) -> list[Any]:
        """Each call's answer, or the exception it met, in ``batch`` order."""
        commands: list[tuple[str, list[Any], list[Any], list[tuple[int, int]]]] = []
        groups: dict[tuple[str, Any], int] = {}  # (sha, first argument) -> command
        for i, (script, keys, args, _) in enumerate(batch):
            per_item = self._merged.get(script.sha)
            if per_item is None:
                commands.append((script.sha, list(keys), list(args), [(i, -1)]))
                continue
            tail_keys, tail_args = (TAIL_KEYS, TAIL_ARGS) if script.sha in self._tailed else (0, 0)
            at = groups.setdefault((script.sha, args[0]), len(commands))
            if at == len(commands):  # the tail, kept once at the end
                commands.append((script.sha, list(keys[len(keys) - tail_keys :]), [args[0]], []))
                commands[at][2].extend(args[len(args) - tail_args :])
            _, merged_keys, merged_args, owners = commands[at]
            share = (len(args) - 1 - tail_args) // per_item
            owners.append((i, share))  # this caller's share of answers
            _insert(merged_keys, keys[: len(keys) - tail_keys], tail_keys)
            _insert(merged_args, args[1 : len(args) - tail_args], tail_args)
        async with self._client.pipeline(transaction=False) as pipe:
            for sha, keys, args, _ in commands:
                pipe.evalsha(sha, len(keys), *keys, *args)
            answers = await pipe.execute(raise_on_error=False)
        results: list[Any] = [None] * len(batch)
        for (*_, owners), answer in zip(commands, answers, strict=True):
            start = 0
            for i, share in owners:
                if share < 0 or isinstance(answer, Exception):
                    results[i] = answer
                else:
                    results[i] = answer[start : start + share]
                    start += share
        return results


def _insert(into: list[Any], items: Sequence[Any], tail: int) -> None:
    """``items`` into ``into`` before its last ``tail`` elements."""
    into[len(into) - tail : len(into) - tail] = items


async def _settle(future: asyncio.Future[Any], result: Awaitable[Any]) -> None:
    try:
        value = await result
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(value)


def map_error(exc: BaseException) -> BaseException:
    """``BackendUnavailable`` when Redis cannot be reached, ``BackendError`` for
    other driver errors (a refused password among them: retrying will not
    help); anything else as it is."""
    if isinstance(exc, redis_errors.AuthenticationError):
        text = str(exc)
        if "Authentication required" in text or "HELLO must be called" in text:
            return BackendError("redis: the server needs a password (redis://:PASSWORD@host)")
        return BackendError("redis: the server refused the user or password of the URL")
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return BackendUnavailable(f"redis: {exc}")
    if isinstance(exc, redis_errors.RedisError):
        return BackendError(f"redis: {exc}")
    return exc


def _deliver(batch: Sequence[Pending], results: Sequence[Any]) -> list[Pending]:
    """Give each caller its answer; the calls whose script the server no
    longer has (NOSCRIPT) are returned, to be sent again."""
    lost = []
    for call, result in zip(batch, results, strict=True):
        future = call[3]
        if future.done():
            continue
        if isinstance(result, redis_errors.NoScriptError):
            lost.append(call)
        elif isinstance(result, Exception):
            future.set_exception(map_error(result))
        else:
            future.set_result(result)
    return lost
