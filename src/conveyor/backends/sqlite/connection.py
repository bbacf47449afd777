"""SQLite connections: the URL, one writer thread per process, reader
threads, migrations.

Every write runs on the writer thread inside ``BEGIN IMMEDIATE`` so that the
write lock is taken up front: a deferred ``BEGIN`` that reads and then writes
fails with "database is locked" at once despite ``busy_timeout``, while
``BEGIN IMMEDIATE`` waits for the lock properly. The writer drains whatever
operations are queued and runs them in one transaction, each inside its own
``SAVEPOINT`` (group commit): each operation stays all-or-nothing, and many of
them share one commit. Readers use their own connections on other threads and
never wait for the writer (WAL).

Limits: one host only (SQLite locking over network file systems is unsafe).
With several processes on one file, a process may wait for another's write
lock up to ``busy_timeout``; transactions are kept tiny so waits stay short,
and leases must stay far longer than the worst wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from conveyor.backends.sqlite.tally import Tally, TallyingConnection
from conveyor.errors import BackendError, BackendUnavailable, ConfigurationError

T = TypeVar("T")
Operation = Callable[[sqlite3.Connection], T]

# Another process holding the write lock is waited for this long, well under
# the default 30 s lease: a writer that gives up at once fails the call (a
# deferred BEGIN that reads then writes would, whatever the timeout: each
# write transaction here begins IMMEDIATE).
BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 256  # operations committed together at most
# The writer touches the ends of its indexes and the rows just claimed or
# finished: 8 MiB holds that working set; 32 MiB filled up with cold pages
# over a long backlog (a 200,000-job run: 68 MB peak RSS against 42 MB).
WRITER_CACHE_KIB = 8 * 1024


def parse_url(url: str) -> tuple[str, str]:
    """``sqlite:///path`` to the file's path and its ``synchronous`` setting."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ConfigurationError(f"expected sqlite:///path/to/file.db, got {url!r}")
    path = parts.path[1:]
    if not path or path == ":memory:":
        raise ConfigurationError("sqlite URL needs a file path (workers share the file)")
    synchronous = parse_qs(parts.query).get("synchronous", ["normal"])[0].upper()
    if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
        raise ConfigurationError(f"synchronous must be off, normal, full or extra: {url!r}")
    return path, synchronous


def connect(
    path: str,
    *,
    synchronous: str = "NORMAL",
    factory: type[sqlite3.Connection] = sqlite3.Connection,
) -> sqlite3.Connection:
    """Open a connection with Conveyor's settings (autocommit; we issue BEGIN ourselves)."""
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=0, factory=factory
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def open_writer(path: str, synchronous: str) -> TallyingConnection:
    """The writer's connection, on a store checked and migrated (blocking)."""
    check_store(path)
    conn = connect(path, synchronous=synchronous, factory=TallyingConnection)
    assert isinstance(conn, TallyingConnection)
    conn.tally = Tally()
    conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
    migrate(conn)
    return conn


@functools.cache
def placeholders(n: int) -> str:
    """``?,?,...``: ``n`` query parameters."""
    return ",".join("?" * n)


def map_error(exc: sqlite3.Error) -> BackendError:
    message = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "locked" in message or "busy" in message or "unable to open" in message
    ):
        return BackendUnavailable(f"sqlite: {message}")
    return BackendError(f"sqlite: {message}")


def _sql_files(folder: str | None) -> dict[str, str]:
    root = resources.files("conveyor.backends.sqlite")
    if folder:
        root = root.joinpath(folder)
    return {f.name: f.read_text("utf-8") for f in root.iterdir() if f.name.endswith(".sql")}


def migrations() -> list[tuple[int, str]]:
    """The numbered migrations, in order: ``(version, sql)``."""
    files = _sql_files("migrations")
    return sorted((int(name.split("_", 1)[0]), sql) for name, sql in files.items())


def check_store(path: str) -> None:
    """Refuse, changing nothing (not even to WAL), a file that is another
    application's database or a Conveyor store newer than this code."""
    file = Path(path)
    if not file.exists() or file.stat().st_size == 0:
        return
    conn = sqlite3.connect(file.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    latest = migrations()[-1][0]
    if version > latest:
        raise ConfigurationError(
            f"store schema {version} at {path} is newer than this Conveyor ({latest}):"
            " upgrade Conveyor to use it"
        )
    if tables and "jobs" not in tables:
        raise ConfigurationError(f"{path} is not a Conveyor store: it holds other tables")


def migrate(conn: sqlite3.Connection, *, fresh_schema: bool = True) -> None:
    """Bring the schema up to date in one ``BEGIN IMMEDIATE`` transaction.

    An empty file gets ``schema.sql`` whole (``fresh_schema``); an existing one
    gets the migrations numbered above its ``user_version``.
    """
    steps = migrations()
    latest = steps[-1][0]
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        empty = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        if empty and fresh_schema:
            _run_script(conn, _sql_files(None)["schema.sql"])
        else:
            for number, sql in steps:
                if number > version:
                    _run_script(conn, sql)
        conn.execute(f"PRAGMA user_version = {latest}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT first; feed statements one at a time instead,
    # cutting where SQLite itself says a statement is complete.
    statement = ""
    for line in script.splitlines(keepends=True):
        if not statement and (not line.strip() or line.lstrip().startswith("--")):
            continue
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement[:80]!r}")


class _Request:
    __slots__ = ("fn", "future", "loop")

    def __init__(self, fn: Operation[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.fn = fn
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


class _BlockingRequest:
    """A request from a thread without an event loop (see ``Writer.run_blocking``)."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Operation[Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


_STOP = object()


class Writer:
    """The one thread that writes, committing queued operations in groups.

    Operations submitted during one turn of the event loop travel to the
    thread together (one queue put, one wake-up), which matters where waking
    a thread costs tens of microseconds. ``submit`` from one event loop at a
    time (``drop_unsent`` when moving to another); ``run_blocking`` from any
    other thread (the lease keeper).
    """

    def __init__(self, conn: TallyingConnection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[_Request] = []
        self._thread = threading.Thread(
            target=self._run, name="conveyor-sqlite-writer", daemon=True
        )
        self._thread.start()

    def submit(self, fn: Operation[T]) -> asyncio.Future[T]:
        request = _Request(fn, asyncio.get_running_loop())
        if not self._pending:
            request.loop.call_soon(self._send)
        self._pending.append(request)
        return request.future

    def _send(self) -> None:
        batch, self._pending = self._pending, []
        self._queue.put(batch)

    def drop_unsent(self) -> None:
        """Forget operations submitted on an event loop that stopped before its
        turn ended (they were never sent, and nobody waits for them): the next
        ``submit``, on another loop, must send its own."""
        self._pending = []

    def run_blocking(self, fn: Operation[T], timeout: float | None = None) -> T:
        """Run ``fn`` in the writer thread and wait for it, from any thread but
        an event loop's: for work that must go on while the loop is busy."""
        request = _BlockingRequest(fn)
        self._queue.put([request])
        result: T = request.future.result(timeout)
        return result

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group: list[_Request | _BlockingRequest] = list(first)
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._queue.put(_STOP)
                    break
                group.extend(item)
            outcomes = self._run_group(group)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request, Any, bool]]] = {}
            for request, (value, ok) in zip(group, outcomes, strict=True):
                if isinstance(request, _BlockingRequest):
                    if ok:
                        request.future.set_result(value)
                    else:
                        request.future.set_exception(value)
                    continue
                by_loop.setdefault(request.loop, []).append((request, value, ok))
            for loop, items in by_loop.items():
                with contextlib.suppress(RuntimeError):  # loop closed: nobody waits
                    loop.call_soon_threadsafe(_resolve, items)

    def _run_group(self, group: list[_Request | _BlockingRequest]) -> list[tuple[Any, bool]]:
        try:
            return self._commit_group(group)
        finally:
            self._conn.tally.clear()

    def _commit_group(self, group: list[_Request | _BlockingRequest]) -> list[tuple[Any, bool]]:
        conn = self._conn
        tally = conn.tally
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return [(map_error(exc), False)] * len(group)
        outcomes: list[tuple[Any, bool]] = []
        for request in group:
            mark = tally.mark()
            try:
                conn.execute("SAVEPOINT op")
                value = request.fn(conn)
                conn.execute("RELEASE op")
                outcomes.append((value, True))
            except Exception as exc:
                mapped = map_error(exc) if isinstance(exc, sqlite3.Error) else exc
                if not conn.in_transaction:
                    # Some errors (disk full, I/O) roll the whole transaction back:
                    # every operation of the group is undone, so every one failed.
                    return [(mapped, False)] * len(group)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                tally.rewind(mark)
                outcomes.append((mapped, False))
        try:
            tally.flush(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            return [(map_error(exc), False)] * len(group)
        return outcomes


def _resolve(items: list[tuple[_Request, Any, bool]]) -> None:
    for request, value, ok in items:
        if request.future.done():  # the caller was cancelled; the write still happened
            continue
        if ok:
            request.future.set_result(value)
        else:
            request.future.set_exception(value)


class Readers:
    """A small pool of threads, each with its own read-only connection."""

    def __init__(self, path: str, *, threads: int = 2) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="conveyor-sqlite-read")

    async def run(self, fn: Operation[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, fn)

    def _call(self, fn: Operation[T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path)
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise map_error(exc) from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
