"""Script calls made during one turn of the event loop, sent to Redis as one
pipeline: many jobs finishing together cost one round trip, not one each.
Also where driver errors become Conveyor's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.commands.core import AsyncScript

from conveyor.errors import BackendError, BackendUnavailable

Call = Callable[[AsyncScript, Sequence[str], Sequence[Any]], Awaitable[Any]]


class Batch:
    """Script calls made during one turn of the event loop, sent as one pipeline.

    Many jobs finishing together cost one round trip, not one each. A call
    whose script the server lost (NOSCRIPT) is retried on its own, which
    reloads the script.
    """

    def __init__(self, client: Any, single: Call) -> None:
        self._client = client
        self._single = single
        self._pending: list[
            tuple[AsyncScript, Sequence[str], Sequence[Any], asyncio.Future[Any]]
        ] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(lambda: self._spawn(self._send()))
        self._pending.append((script, keys, args, future))
        return future

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # keep a reference until it ends
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # every caller of the batch hears about it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(map_error(exc))
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, redis_errors.NoScriptError):
                self._spawn(_settle(future, self._single(script, keys, args)))
            elif isinstance(result, Exception):
                future.set_exception(map_error(result))
            else:
                future.set_result(result)


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
    other driver errors; anything else as it is."""
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return BackendUnavailable(f"redis: {exc}")
    if isinstance(exc, redis_errors.RedisError):
        return BackendError(f"redis: {exc}")
    return exc
