"""Job events on Redis: one stream per namespace (``Keys.events``, under the
namespace's hash tag, so a Cluster keeps it beside every other key), written
by the scripts that change jobs (lib.lua's ``emit``), capped with ``XADD
MAXLEN ~`` as they are written and trimmed by age by workers (``trim``:
``XTRIM MINID``, on the server's clock, which stream ids are made of). Reading takes a page
and the oldest id kept at one instant (``events-1.lua``): a reader whose
last id is older than that may have lost its next entries to trimming, a
gap (reported too when the trim took only the reader's own last entry:
stream ids say nothing of what lay between two of them). A caught-up
reader blocks in ``XREAD`` until the next entry."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.errors import InvalidInput
from conveyor.events import EventKind, EventPage, JobEvent
from conveyor.job import JobState

__all__ = ["last_id", "page", "trim", "wait"]

_ID = re.compile(r"^(\d+)-(\d+)$")


def _order(event_id: str) -> tuple[int, int]:
    match = _ID.match(event_id)
    if match is None:
        raise InvalidInput("after", f"not an event id of this store: {event_id!r}")
    return int(match[1]), int(match[2])


async def page(conn: RedisConnection, after: str | None, limit: int) -> EventPage:
    if after is not None:
        _order(after)
    oldest, entries = await conn.run("events", [conn.keys.events], [after or "", limit])
    gap = after is not None and bool(oldest) and _order(oldest.decode()) > _order(after)
    return EventPage([_event(entry) for entry in entries], gap=gap)


async def last_id(conn: RedisConnection) -> str | None:
    client = await conn.connected()
    async with mapped_errors():
        newest = await client.xrevrange(conn.keys.events, count=1)
    return newest[0][0].decode() if newest else None


async def trim(conn: RedisConnection) -> None:
    """Drop the events older than the app's ``max_age_s``, by the server's own
    clock, which stream ids are made of (exactly: this runs now and then, not
    with every event)."""
    client = await conn.connected()
    async with mapped_errors():
        seconds, micros = await client.time()
        cutoff = seconds * 1000 + micros // 1000 - int(conn.events.max_age_s * 1000)
        await client.xtrim(conn.keys.events, minid=cutoff, approximate=False)


async def wait(conn: RedisConnection, after: str | None, timeout_s: float) -> None:
    await conn.block_on_stream(conn.keys.events, after or "0-0", timeout_s)


def _event(entry: tuple[bytes, list[bytes]]) -> JobEvent:
    event_id, flat = entry
    f = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
    kind, job_id, queue, task, state, at = f["h"].decode().split("\0")  # lib.lua's emit
    return JobEvent(
        id=event_id.decode(),
        kind=EventKind(kind),
        job_id=job_id,
        queue=queue,
        task=task,
        at_ms=int(at),
        state=JobState(state) if state else None,
        attempt=_int(f.get("a")),
        run_at_ms=_int(f.get("r")),
        progress=None if f.get("p") is None else float(f["p"]),
        detail=_json(f.get("d")),
        result=_json(f.get("res")),
        error=None if f.get("e") is None else f["e"].decode(errors="replace"),
        schedule=None if f.get("sch") is None else f["sch"].decode(),
    )


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)


def _json(raw: bytes | None) -> Any:
    return None if not raw else msgspec.json.decode(raw)
