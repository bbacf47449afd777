"""Job events on Redis: one stream per namespace (``Keys.events``, under the
namespace's hash tag, so a Cluster keeps it beside every other key), written
by the scripts that change jobs (lib.lua's ``emit``), capped with ``XADD
MAXLEN ~`` as they are written and trimmed by age by workers (``trim``:
``XTRIM MINID``, on the server's clock, which stream ids are made of). An
entry holds the events of one script call (a claim of many jobs, a batch of
completions: one XADD for all); an event's id is its entry's, with
``:<index>`` when the entry holds several. Reading takes a page and the
oldest id kept at one instant (``events-1.lua``): a reader whose last
entry is older than that may have lost its next entries to trimming, a gap
(reported too when the trim took only the reader's own last entry: stream
ids say nothing of what lay between two of them). A caught-up reader
blocks in ``XREAD`` until the next entry."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from conveyor.backends.redis.connection import RedisConnection, mapped_errors
from conveyor.errors import InvalidInput
from conveyor.events import EventKind, EventPage, JobEvent
from conveyor.job import JobState

__all__ = ["last_id", "page", "trim", "wait"]

# An event's id: its stream entry's, and for an entry of several events
# (one script call's: lib.lua's flush_events) ":<index>" in it.
_ID = re.compile(r"^(\d+)-(\d+)(?::(\d+))?$")


def _position(event_id: str) -> tuple[int, int, int | None]:
    """An event id's entry (ms, seq) and index in it (None: a lone event's)."""
    match = _ID.match(event_id)
    if match is None:
        raise InvalidInput("after", f"not an event id of this store: {event_id!r}")
    index = None if match[3] is None else int(match[3])
    return int(match[1]), int(match[2]), index


def _entry(event_id: str) -> str:
    return event_id.partition(":")[0]


async def page(conn: RedisConnection, after: str | None, limit: int) -> EventPage:
    start, within = "-", None  # XRANGE's start; the entry read into last, and how far
    if after is not None:
        ms, seq, index = _position(after)
        # within an entry: read it again, from the event after the one read last
        start = f"({ms}-{seq}" if index is None else f"{ms}-{seq}"
        within = None if index is None else (f"{ms}-{seq}", index + 1)
    oldest, entries = await conn.run("events", [conn.keys.events], [start, limit])
    gap = False
    if after is not None and oldest:
        gap = _position(oldest.decode())[:2] > _position(after)[:2]
    found: list[JobEvent] = []
    for entry in entries:
        skip = within[1] if within is not None and entry[0].decode() == within[0] else 0
        found += _events(entry, skip)
        if len(found) >= limit:
            break
    return EventPage(found[:limit], gap=gap)


async def last_id(conn: RedisConnection) -> str | None:
    client = await conn.connected()
    async with mapped_errors():
        newest = await client.xrevrange(conn.keys.events, count=1)
    if not newest:
        return None
    entry_id, fields = newest[0]  # parsed to a dict: of its events, only 'n' holds
    count = int(fields.get(b"n", 1))
    return entry_id.decode() if count == 1 else f"{entry_id.decode()}:{count - 1}"


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
    await conn.block_on_stream(conn.keys.events, _entry(after or "0-0"), timeout_s)


def _events(entry: tuple[bytes, list[bytes]], skip: int = 0) -> list[JobEvent]:
    """The events of one stream entry, but its first ``skip`` (read by the
    page before): each starts at its 'h' field."""
    raw_id, flat = entry
    if skip and flat[:1] == [b"n"] and skip >= int(flat[1]):
        return []  # read to its end already: a reader resuming after its last event
    entry_id = raw_id.decode()
    fields: list[dict[str, bytes]] = []
    for i in range(0, len(flat), 2):
        name = flat[i].decode()
        if name == "h":
            fields.append({})
        elif not fields:  # the entry's own 'n', before its first event
            continue
        fields[-1][name] = flat[i + 1]
    if len(fields) == 1:
        return [_event(entry_id, fields[0])][skip:]
    return [_event(f"{entry_id}:{n}", f) for n, f in enumerate(fields) if n >= skip]


def _event(event_id: str, f: dict[str, bytes]) -> JobEvent:
    kind, job_id, queue, task, state, at = f["h"].decode().split("\0")  # lib.lua's emit
    run_at_ms = _int(f.get("r"))
    if run_at_ms is None and kind == "enqueued":
        run_at_ms = int(at)  # ready at once: lib.lua leaves 'r' out
    return JobEvent(
        id=event_id,
        kind=EventKind(kind),
        job_id=job_id,
        queue=queue,
        task=task,
        at_ms=int(at),
        state=JobState(state) if state else None,
        attempt=_int(f.get("a")),
        run_at_ms=run_at_ms,
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
