"""The store: connections, pragmas, migrations, the write-behind writer and typed reads.

Writes are queued from any thread and drained by one writer thread per database per process
in batched ``BEGIN IMMEDIATE`` transactions. The writer owns a plain ``sqlite3`` connection:
it turns a batch into rows and writes them in one go, with no round trips between threads
(under a busy GIL each such round trip could wait a whole switch interval). Callers wait for
the disk only at flush points (``flush``). Async reads go through aiosqlite connections of
their own; point lookups on hot paths use a read-only connection of the calling thread.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import datetime as dt
import inspect
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import msgspec

from millstream._engine.exceptions import ObjectNotFound, StoreError
from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State, StateDetails, StateType

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 30_000
# How long queued writes may wait for company before the writer commits them (seconds).
_GROUP_COMMIT_DELAY = 0.01
_MAX_BATCH = 5_000
_HOSTNAME = socket.gethostname()


def _load_sql() -> tuple[list[tuple[int, str]], dict[str, str]]:
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    migrations: list[tuple[int, str]] = []
    queries: dict[str, str] = {}
    kind: str | None = None
    key = ""
    body: list[str] = []
    for line in [*text.splitlines(), "-- name: __end__"]:
        if line.startswith(("-- migration:", "-- name:")):
            if kind == "migration":
                migrations.append((int(key), "\n".join(body)))
            elif kind == "name":
                queries[key] = "\n".join(body).strip().rstrip(";")
            kind = "migration" if line.startswith("-- migration:") else "name"
            key, body = line.split(":", 1)[1].strip(), []
        elif kind is not None:
            body.append(line)
    return migrations, queries


MIGRATIONS, Q = _load_sql()
SCHEMA_VERSION = max(v for v, _ in MIGRATIONS)

_json_encoder = msgspec.json.Encoder(enc_hook=lambda obj: _short(repr(obj)))
_details_encoder = msgspec.json.Encoder()


def _short(text: str, limit: int = 2_000) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_json(value: Any) -> str:
    """JSON text of a value; what JSON cannot hold is stored as its (truncated) repr."""
    try:
        return _json_encoder.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return _json_encoder.encode(_short(repr(value))).decode()


_UTC = dt.UTC
_encode = msgspec.json.encode


def _ts(value: dt.datetime | None) -> str | None:
    """A timestamp as fixed-width UTC text (``...T12:00:00.000000Z``), so text order is time
    order; msgspec formats it in C, several times faster than ``isoformat``."""
    if value is None:
        return None
    if value.tzinfo is not _UTC:
        if value.tzinfo is None:
            raise ValueError(f"Timestamps must be timezone-aware, got {value!r}")
        value = value.astimezone(_UTC)
    text = _encode(value)
    if len(text) == 22:  # no fraction is printed for a whole second
        return text[1:-2].decode() + ".000000Z"
    return text[1:-1].decode()


def db_id(value: uuid.UUID | str | None) -> str | None:
    """An id as stored: 32 hex digits (accepts a UUID or any string form of one)."""
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return value.hex
    try:
        return uuid.UUID(str(value)).hex
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not a valid id") from None


def _id(value: uuid.UUID | None) -> str | None:
    return value.hex if value is not None else None


def _parse_ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _details_json(details: StateDetails) -> str | None:
    if details == _EMPTY_DETAILS:
        return None
    return _details_encoder.encode(details).decode()


def _settle(
    fut: concurrent.futures.Future[Any], error: BaseException | None, value: Any = None
) -> None:
    # A waiter that gave up (its task was cancelled) cancels the future: nothing to tell it,
    # and the writer thread must go on.
    if fut.done():
        return
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


class _CacheRow:
    __slots__ = ("blob", "expiration", "key", "task_run_id")

    def __init__(
        self, key: str, blob: bytes, expiration: dt.datetime | None, task_run_id: uuid.UUID
    ) -> None:
        self.key = key
        self.blob = blob
        self.expiration = expiration
        self.task_run_id = task_run_id


class _Flush:
    """A marker in the write queue: resolved once everything queued before it is committed."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()


_cancellation_watch: tuple[Callable[[], list[uuid.UUID]], Callable[[uuid.UUID], object]] | None = (
    None
)


def watch_cancellations(
    live_ids: Callable[[], list[uuid.UUID]], request: Callable[[uuid.UUID], object]
) -> None:
    """Have the store poll for Cancelling runs among ``live_ids()`` and ``request`` their stop.

    Orchestration registers itself here (the store knows nothing of running flows).
    """
    global _cancellation_watch
    _cancellation_watch = (live_ids, request)


class Store:
    """One SQLite database: a write-behind queue, its writer, and read helpers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: collections.deque[Any] = collections.deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._urgent = threading.Event()
        self._open_future: concurrent.futures.Future[None] | None = None
        self._known_flows: dict[str, uuid.UUID] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        self._live: set[uuid.UUID] = set()
        # True while the writer holds a batch taken off the queue and not yet committed: a
        # read that finds the queue empty still waits for that batch (read-your-writes).
        self._writing = False
        self._cache_memo: dict[str, tuple[bytes, dt.datetime | None]] = {}
        self._point_readers = threading.local()
        self.heartbeat_seconds = 10.0
        self.poll_seconds = 0.5

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> concurrent.futures.Future[None]:
        """Start the writer thread (once); the future resolves when the database is usable."""
        fut = self._open_future
        if fut is not None:
            return fut
        with self._lock:
            if self._open_future is None:
                self._open_future = concurrent.futures.Future()
                thread = threading.Thread(
                    target=self._writer_main, name="millstream-store", daemon=True
                )
                self._thread = thread
                thread.start()
            return self._open_future

    async def ensure_open(self) -> None:
        """Wait (from any event loop) until the database is open and migrated."""
        fut = self.start()
        if not fut.done():
            await asyncio.wrap_future(fut)
        fut.result()

    def ensure_open_sync(self) -> None:
        """Block until the database is open and migrated; raises ``StoreError`` if it can't be."""
        self.start().result()

    # -- the hot path: queue writes from any thread -------------------------------------------
    def _put(self, item: Any, urgent: bool = False) -> None:
        self._queue.append(item)
        if urgent:
            self._urgent.set()
            self._wake.set()
        elif not self._wake_pending:
            self._wake_pending = True
            self._wake.set()
        if self._open_future is None:
            self.start()

    # Queue items are plain tuples (cheapest to build): (kind, run, state, result) for a state
    # change, (fn, future) for a call; markers and records are their own types.
    def put_flow_run_state(self, run: FlowRun, state: State, result: bytes | None = None) -> None:
        """Queue a flow run (its current fields) together with a new state of it."""
        self._put(("flow", run, state, result))

    def put_task_run_state(self, run: TaskRun, state: State, result: bytes | None = None) -> None:
        """Queue a task run (its current fields) together with a new state of it."""
        self._put(("task", run, state, result))

    def put_logs(self, records: Iterable[LogRecord]) -> None:
        """Queue log lines."""
        for record in records:
            self._put(record)

    def put_call(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        """Queue ``fn(conn)`` to run inside the writer's next transaction; the future gets its
        result. ``fn`` takes the writer's ``sqlite3.Connection``; an ``async def fn(conn)``
        written against aiosqlite's ``execute``/``executemany`` works too."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._put((fn, fut), urgent=True)
        return fut

    def flow_id(self, name: str) -> uuid.UUID:
        """The id of the flow called ``name`` (queued for creation the first time it is seen)."""
        flow_id = self._known_flows.get(name)
        if flow_id is None:
            flow_id = uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:flow:{name}")
            self._known_flows[name] = flow_id
            self._put(FlowRecord(id=flow_id, name=name, created=dt.datetime.now(dt.UTC)))
        return flow_id

    def flush_future(self) -> concurrent.futures.Future[None]:
        """A future resolved once everything queued so far is durable."""
        marker = _Flush()
        self._put(marker, urgent=True)
        return marker.future

    async def flush(self) -> None:
        """Wait, from any event loop, until everything queued so far is durable."""
        fut = self.flush_future()
        await asyncio.wrap_future(fut)

    def flush_sync(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is durable."""
        self.flush_future().result(timeout)

    # -- the writer ---------------------------------------------------------------------------
    def _writer_main(self) -> None:
        assert self._open_future is not None
        try:
            conn = open_for_writing(self.path)
        except BaseException as exc:
            self._open_future.set_exception(exc)
            self._fail_pending(exc)
            return
        self._open_future.set_result(None)
        next_beat = time.monotonic() + self.heartbeat_seconds
        next_poll = time.monotonic() + self.poll_seconds
        try:
            while True:
                self._wake.wait(timeout=max(0.0, min(next_beat, next_poll) - time.monotonic()))
                if not self._urgent.is_set() and not self._closed:
                    # Group commit: plain writes wait a moment for company; a flush does not.
                    self._urgent.wait(_GROUP_COMMIT_DELAY)
                self._wake.clear()
                self._urgent.clear()
                self._wake_pending = False
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_seconds
                    self._beat()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_seconds
                    self._deliver_cancellations(conn)
                # Set before the first item leaves the queue, cleared once all are committed.
                self._writing = True
                try:
                    while self._queue:
                        self._drain_once(conn)
                finally:
                    self._writing = False
                if self._closed:
                    return
        finally:
            conn.close()

    def _deliver_cancellations(self, conn: sqlite3.Connection) -> None:
        # Another process may have asked a run of ours to stop (state Cancelling).
        watch = _cancellation_watch
        if watch is None:
            return
        live_ids, request = watch
        live = live_ids()
        if not live:
            return
        marks = ", ".join("?" * len(live))
        rows = conn.execute(
            f"SELECT id FROM flow_run WHERE state_type = 'CANCELLING' AND id IN ({marks})",
            [i.hex for i in live],
        ).fetchall()
        for (run_id,) in rows:
            request(uuid.UUID(run_id))

    def _fail_pending(self, exc: BaseException) -> None:
        # The database never opened: fail every flush so no caller waits forever.
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Flush):
                _settle(item.future, exc)
            elif isinstance(item, tuple):
                _settle(item[1], exc)

    def _drain_once(self, conn: sqlite3.Connection) -> None:
        batch: list[Any] = []
        queue = self._queue
        while queue and len(batch) < _MAX_BATCH:
            batch.append(queue.popleft())
        # Coalesce: one row write per run per batch, carrying every state it went through.
        runs: dict[Any, list[Any]] = {}
        logs: list[tuple[Any, ...]] = []
        flows: list[tuple[Any, ...]] = []
        caches: list[tuple[Any, ...]] = []
        calls: list[Any] = []
        flushes: list[_Flush] = []
        for item in batch:
            cls = type(item)
            if cls is tuple and len(item) == 4:
                kind, run, state, result = item
                entry = runs.get(id(run))
                line = _history_entry(state)
                if entry is None:
                    runs[id(run)] = [kind, run, state, [line], result]
                else:
                    entry[2] = state
                    entry[3].append(line)
                    if result is not None:
                        entry[4] = result
            elif cls is LogRecord:
                logs.append(
                    (
                        _id(item.flow_run_id),
                        _id(item.task_run_id),
                        item.level,
                        item.name,
                        item.message,
                        _ts(item.timestamp),
                    )
                )
            elif cls is FlowRecord:
                flows.append((_id(item.id), item.name, _ts(item.created)))
            elif cls is _CacheRow:
                caches.append(
                    (
                        item.key,
                        item.blob,
                        _ts(item.expiration),
                        item.task_run_id.hex,
                        _ts(dt.datetime.now(dt.UTC)),
                    )
                )
            elif cls is _Flush:
                flushes.append(item)
            else:
                calls.append(item)
        flow_runs: list[tuple[Any, ...]] = []
        task_runs: list[tuple[Any, ...]] = []
        for kind, run, state, lines, result in runs.values():
            history = _lines_encoder.encode_lines(lines).decode()
            if kind == "task":
                task_runs.append(_task_run_row(run, state, history, result))
            else:
                flow_runs.append(_flow_run_row(run, state, history, result))
        error: BaseException | None = None
        results: list[Any] = []
        try:
            results = _write_batch(
                conn, flows, flow_runs, task_runs, logs, caches, [c[0] for c in calls]
            )
        except BaseException as exc:  # a failed batch is rolled back; tell whoever waits
            error = exc
        for (_, fut), res in zip(calls, results or [None] * len(calls), strict=False):
            if error is not None:
                _settle(fut, error)
            elif isinstance(res, BaseException):
                _settle(fut, res)
            else:
                _settle(fut, None, res)
        for marker in flushes:
            if error is not None:
                _settle(marker.future, StoreError(f"Writing to {self.path} failed: {error}"))
            else:
                _settle(marker.future, None)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the writer thread."""
        if self._open_future is None:
            return
        try:
            if self._open_future.exception(timeout) is None:
                self.flush_sync(timeout)
        except Exception:
            pass
        self._closed = True
        try:
            self._put(_Flush(), urgent=True)
        except RuntimeError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- reads --------------------------------------------------------------------------------
    def has_unwritten(self) -> bool:
        """Whether something this process queued is not committed yet."""
        # The queue first, then the flag: the writer raises the flag before it takes anything
        # off the queue, so an item queued before this call is seen in one or the other.
        return bool(self._queue) or self._writing

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection of its own (separate from the writer's).

        What this process queued before the read is committed first (the store is
        write-behind, reads must still see the process's own writes); with nothing queued
        the read costs no more than before.
        """
        await self.ensure_open()
        if self.has_unwritten():
            await self.flush()
        conn = await connect(self.path, write=False)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    # -- cache entries --------------------------------------------------------------------------
    async def lookup_cache(self, key: str) -> bytes | None:
        """The recorded result for a cache key, unless missing or expired."""
        hit = self._cache_memo.get(key)
        if hit is None:
            await self.ensure_open()
            row = self._point_read(Q["select_cache"], (key,))
            if row is None:
                return None
            hit = (row[0], _parse_ts(row[1]))
            self._cache_memo[key] = hit
        blob, expiration = hit
        if expiration is not None and expiration <= dt.datetime.now(dt.UTC):
            return None
        return blob

    def _point_read(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        # A primary-key lookup takes microseconds: done on the calling thread through its own
        # read-only connection, rather than paying two thread hops through aiosqlite.
        conn: sqlite3.Connection | None = getattr(self._point_readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"{self.path.as_uri()}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000
            )
            self._point_readers.conn = conn
        row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        return row

    def put_cache(
        self, key: str, blob: bytes, expiration: dt.datetime | None, task_run_id: uuid.UUID
    ) -> None:
        """Record a cache entry (visible to this process at once, to others once written)."""
        self._cache_memo[key] = (blob, expiration)
        self._put(_CacheRow(key, blob, expiration, task_run_id))

    async def fetchone(self, query: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """One row of a named query (``query`` is a key of the named queries)."""

        async def run(conn: aiosqlite.Connection) -> sqlite3.Row | None:
            async with conn.execute(Q[query], params) as cursor:
                row: sqlite3.Row | None = await cursor.fetchone()
            return row

        return await self.read(run)

    async def fetchall(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """All rows of a named query (``query`` is a key of the named queries)."""

        async def run(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
            async with conn.execute(Q[query], params) as cursor:
                rows: list[sqlite3.Row] = list(await cursor.fetchall())
            return rows

        return await self.read(run)

    async def fetchall_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """All rows of an ad-hoc read-only query (for filters built at run time)."""

        async def run(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
            async with conn.execute(sql, params) as cursor:
                rows: list[sqlite3.Row] = list(await cursor.fetchall())
            return rows

        return await self.read(run)

    async def read_flow_run_or_none(self, flow_run_id: uuid.UUID | str) -> FlowRun | None:
        """The flow run with this id, or None."""
        row = await self.fetchone("select_flow_run", (db_id(flow_run_id),))
        return flow_run_from_row(row) if row is not None else None

    async def read_flow_run_result(self, flow_run_id: uuid.UUID | str) -> bytes | None:
        """The recorded result envelope of a flow run (None when none was recorded)."""
        rows = await self.fetchall_sql(
            "SELECT result FROM flow_run WHERE id = ?", (db_id(flow_run_id),)
        )
        return rows[0][0] if rows else None

    async def read_completed_task_results(
        self, flow_run_id: uuid.UUID | str
    ) -> dict[tuple[str, str], tuple[bytes, str | None]]:
        """Recorded results of a flow run's completed task runs, with the code fingerprint each
        ran with, by (task key, call index); a call recorded more than once: its latest."""
        rows = await self.fetchall("select_completed_task_results", (db_id(flow_run_id),))
        return {
            (r["task_key"], r["dynamic_key"]): (r["result"], r["code_fingerprint"]) for r in rows
        }

    # -- liveness -----------------------------------------------------------------------------
    def track_live(self, flow_run_id: uuid.UUID) -> None:
        """Heartbeat this flow run while it is live in this process."""
        self._live.add(flow_run_id)

    def untrack_live(self, flow_run_id: uuid.UUID) -> None:
        """Stop heartbeating this flow run."""
        self._live.discard(flow_run_id)

    @property
    def live_runs(self) -> set[uuid.UUID]:
        """Top-level flow runs live in this process."""
        return set(self._live)

    def _beat(self) -> None:
        # Other hosts tell a live run from an orphan by this stamp (same host: by pid).
        if not self._live:
            return
        ids = encode_json([i.hex for i in list(self._live)])
        stamp = _ts(dt.datetime.now(dt.UTC))

        def beat(conn: sqlite3.Connection) -> None:
            conn.execute(Q["update_heartbeats"], (stamp, ids))

        self._queue.append((beat, concurrent.futures.Future()))

    async def read_flow_run(self, flow_run_id: uuid.UUID | str) -> FlowRun:
        """The flow run with this id; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_flow_run", (db_id(flow_run_id),))
        if row is None:
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found in {self.path}")
        return flow_run_from_row(row)

    async def read_task_run(self, task_run_id: uuid.UUID | str) -> TaskRun:
        """The task run with this id; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_task_run", (db_id(task_run_id),))
        if row is None:
            raise ObjectNotFound(f"Task run {str(task_run_id)!r} not found in {self.path}")
        return task_run_from_row(row)

    async def read_task_runs_of(self, flow_run_id: uuid.UUID | str) -> list[TaskRun]:
        """The task runs of a flow run, in creation order."""
        rows = await self.fetchall("select_task_runs_of_flow_run", (db_id(flow_run_id),))
        return [task_run_from_row(r) for r in rows]

    async def read_flow_run_states(self, flow_run_id: uuid.UUID | str) -> list[State]:
        """Every state a flow run went through, oldest first; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_flow_run_history", (db_id(flow_run_id),))
        if row is None:
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found in {self.path}")
        return parse_history(row[0])

    async def read_task_run_states(self, task_run_id: uuid.UUID | str) -> list[State]:
        """Every state a task run went through, oldest first; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_task_run_history", (db_id(task_run_id),))
        if row is None:
            raise ObjectNotFound(f"Task run {str(task_run_id)!r} not found in {self.path}")
        return parse_history(row[0])


def _write_batch(
    conn: sqlite3.Connection,
    flows: list[tuple[Any, ...]],
    flow_runs: list[tuple[Any, ...]],
    task_runs: list[tuple[Any, ...]],
    logs: list[tuple[Any, ...]],
    caches: list[tuple[Any, ...]],
    calls: list[Callable[[Any], Any]],
) -> list[Any]:
    """Write one batch in one transaction (on the writer thread)."""
    results: list[Any] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        if flows:
            conn.executemany(Q["upsert_flow"], flows)
        if flow_runs:
            _insert_many(conn, "upsert_flow_run", flow_runs)
        if task_runs:
            _insert_many(conn, "upsert_task_run", task_runs)
        if logs:
            conn.executemany(Q["insert_log"], logs)
        if caches:
            # After the task runs: a cache entry never points at an unrecorded run.
            conn.executemany(Q["upsert_cache"], caches)
        for fn in calls:
            # A failing call must not lose the rest of the batch: isolate it in a savepoint.
            conn.execute("SAVEPOINT call")
            try:
                results.append(_run_call(fn, conn))
                conn.execute("RELEASE call")
            except Exception as exc:
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
                results.append(exc)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return results


def _run_call(fn: Callable[[Any], Any], conn: sqlite3.Connection) -> Any:
    """Run a queued call: ``fn(sqlite3_connection)``, or an ``async fn(conn)`` written against
    aiosqlite's execute/executemany, driven here without an event loop."""
    if not inspect.iscoroutinefunction(fn):
        return fn(conn)
    coro = fn(_AsyncFacade(conn))
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError(f"Queued store call {fn!r} awaited something other than the database")


class _Cursor:
    """aiosqlite's cursor surface over a sqlite3 cursor whose work is already done."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid

    def __await__(self) -> Any:
        yield from ()
        return self

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class _AsyncFacade:
    """What a queued ``async fn(conn)`` sees: aiosqlite-style methods, run synchronously."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        return _Cursor(self._conn.execute(sql, params))

    def executemany(self, sql: str, params: Any) -> _Cursor:
        return _Cursor(self._conn.executemany(sql, params))


class _HistoryEntry(msgspec.Struct, array_like=True):
    """One line of a run's state history (msgspec writes ids and timestamps in C)."""

    id: uuid.UUID
    type: str
    name: str | None
    message: str | None
    timestamp: dt.datetime
    details: StateDetails | None


_lines_encoder = msgspec.json.Encoder()


# Rows per multi-row INSERT: fewer statements per batch than one per row. Always exactly this
# many (the rest go row by row), so the connection caches two compiled statements per table,
# not one per batch size; 32 rows x 31 columns also fits older SQLite's 999-parameter limit.
_CHUNK = 32
_multi_sql: dict[tuple[str, int], str] = {}


def _multi_row_sql(name: str, rows: int, width: int) -> str:
    key = (name, rows)
    sql = _multi_sql.get(key)
    if sql is None:
        head, tail = Q[name].split(") VALUES (", 1)
        conflict = tail[tail.index(")") + 1 :]
        one = "(" + ", ".join("?" * width) + ")"
        sql = _multi_sql[key] = f"{head}) VALUES {', '.join([one] * rows)}{conflict}"
    return sql


def _insert_many(conn: sqlite3.Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
    width = len(rows[0])
    whole = len(rows) - len(rows) % _CHUNK
    if whole:
        sql = _multi_row_sql(name, _CHUNK, width)
        for start in range(0, whole, _CHUNK):
            conn.execute(sql, [value for row in rows[start : start + _CHUNK] for value in row])
    if whole < len(rows):
        conn.executemany(Q[name], rows[whole:])


def _history_entry(state: State) -> _HistoryEntry:
    details = state.state_details
    return _HistoryEntry(
        state.id,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        state.timestamp,
        details if details != _EMPTY_DETAILS else None,
    )


_EMPTY_DETAILS = StateDetails()
_history_decoder = msgspec.json.Decoder(_HistoryEntry)


def parse_history(text: str) -> list[State]:
    """The states recorded in a run's history column, oldest first."""
    states = []
    for line in text.splitlines():
        if not line:
            continue
        entry = _history_decoder.decode(line)
        states.append(
            State(
                id=entry.id,
                type=StateType(entry.type),
                name=entry.name,
                message=entry.message,
                timestamp=entry.timestamp,
                state_details=entry.details or StateDetails(),
            )
        )
    return states


def _flow_run_row(
    run: FlowRun, state: State, history: str, result: bytes | None
) -> tuple[Any, ...]:
    now = _ts(state.timestamp)
    return (
        run.id.hex,
        run.name,
        run.flow_id.hex,
        run.flow_name,
        run.flow_version,
        encode_json(run.parameters),
        encode_json(run.tags),
        _id(run.parent_task_run_id),
        _id(run.parent_flow_run_id),
        _id(run.root_flow_run_id),
        _id(run.deployment_id),
        run.idempotency_key,
        run.entrypoint,
        run.run_count,
        state.id.hex,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        now,
        _details_json(state.state_details),
        _ts(run.start_time),
        _ts(run.end_time),
        _ts(run.expected_start_time),
        _ts(run.created) or now,
        now,
        run.pid,
        run.hostname,
        _ts(run.heartbeat),
        run.parameters_blob,
        history,
        result,
    )


def _task_run_row(
    run: TaskRun, state: State, history: str, result: bytes | None
) -> tuple[Any, ...]:
    now = _ts(state.timestamp)
    return (
        run.id.hex,
        _id(run.flow_run_id),
        run.name,
        run.task_key,
        run.task_name,
        run.dynamic_key,
        run.task_version,
        run.cache_key,
        _ts(run.cache_expiration),
        encode_json(run.parameters),
        encode_json(run.tags),
        run.run_count,
        state.id.hex,
        state.type,  # a StrEnum member is a str: no need for the slow .value lookup
        state.name,
        state.message,
        now,
        _details_json(state.state_details),
        _ts(run.start_time),
        # The final state's timestamp is the end time: format it once.
        now if run.end_time is state.timestamp else _ts(run.end_time),
        _ts(run.expected_start_time),
        _ts(run.created) or now,
        now,
        history,
        result,
        run.code_fingerprint,
    )


def _row_state(row: sqlite3.Row) -> State | None:
    if row["state_type"] is None:
        return None
    data: Any = None
    if "result" in row.keys() and row["result"] is not None:
        from millstream._engine.results.refs import StoredResult

        # The recorded result, decoded when state.result() asks for it.
        data = StoredResult(row["result"])
    return State(
        id=uuid.UUID(row["state_id"]),
        type=StateType(row["state_type"]),
        name=row["state_name"],
        message=row["state_message"],
        timestamp=dt.datetime.fromisoformat(row["state_timestamp"]),
        data=data,
        state_details=msgspec.json.decode(row["state_details"] or "{}", type=StateDetails),
    )


def flow_run_from_row(row: sqlite3.Row) -> FlowRun:
    """A ``FlowRun`` from a ``flow_run`` row."""
    return FlowRun(
        id=uuid.UUID(row["id"]),
        name=row["name"],
        flow_id=uuid.UUID(row["flow_id"]),
        flow_name=row["flow_name"],
        flow_version=row["flow_version"],
        parameters=msgspec.json.decode(row["parameters"]),
        tags=msgspec.json.decode(row["tags"]),
        parent_task_run_id=_uuid(row["parent_task_run_id"]),
        parent_flow_run_id=_uuid(row["parent_flow_run_id"]),
        root_flow_run_id=_uuid(row["root_flow_run_id"]),
        deployment_id=_uuid(row["deployment_id"]),
        idempotency_key=row["idempotency_key"],
        entrypoint=row["entrypoint"],
        run_count=row["run_count"],
        state=_row_state(row),
        start_time=_parse_ts(row["start_time"]),
        end_time=_parse_ts(row["end_time"]),
        expected_start_time=_parse_ts(row["expected_start_time"]),
        created=_parse_ts(row["created"]),
        pid=row["pid"],
        hostname=row["hostname"],
        heartbeat=_parse_ts(row["heartbeat"]),
        parameters_blob=row["parameters_blob"],
    )


def task_run_from_row(row: sqlite3.Row) -> TaskRun:
    """A ``TaskRun`` from a ``task_run`` row."""
    return TaskRun(
        id=uuid.UUID(row["id"]),
        flow_run_id=_uuid(row["flow_run_id"]),
        name=row["name"],
        task_key=row["task_key"],
        task_name=row["task_name"],
        dynamic_key=row["dynamic_key"],
        task_version=row["task_version"],
        cache_key=row["cache_key"],
        cache_expiration=_parse_ts(row["cache_expiration"]),
        parameters=msgspec.json.decode(row["parameters"]),
        tags=msgspec.json.decode(row["tags"]),
        run_count=row["run_count"],
        state=_row_state(row),
        start_time=_parse_ts(row["start_time"]),
        end_time=_parse_ts(row["end_time"]),
        expected_start_time=_parse_ts(row["expected_start_time"]),
        created=_parse_ts(row["created"]),
        code_fingerprint=row["code_fingerprint"],
    )


# -- connections -------------------------------------------------------------------------------
def _check_path(path: Path, write: bool) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise StoreError(
            f"Cannot open database {str(path)!r}: directory {str(parent)!r} does not exist"
        )
    if path.exists() and not path.is_file():
        raise StoreError(f"Cannot open database {str(path)!r}: it is not a regular file")
    if write and not os.access(parent, os.W_OK):
        raise StoreError(
            f"Cannot open database {str(path)!r}: directory {str(parent)!r} is not writable"
        )
    if write and path.exists() and not os.access(path, os.W_OK):
        raise StoreError(f"Cannot open database {str(path)!r}: the file is not writable")


def open_for_writing(path: Path) -> sqlite3.Connection:
    """The writer's connection: WAL, migrated. Every failure is a ``StoreError`` naming the path."""
    _check_path(path, write=True)
    try:
        conn = sqlite3.connect(
            str(path),
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # Switching to WAL and migrating take exclusive locks that SQLite's busy handler does
        # not always wait for: two processes opening a new file at once retry here.
        _retry_locked(lambda: _prepare_for_writing(conn, path))
        _check_version(conn.execute("PRAGMA user_version").fetchone()[0], path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"Cannot use database {str(path)!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


async def connect(path: Path, *, write: bool = False) -> aiosqlite.Connection:
    """A read connection to ``path`` (the writer thread has opened and migrated the file)."""
    _check_path(path, write=False)
    try:
        conn = await aiosqlite.connect(str(path), timeout=_BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def _check_version(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"Database {str(path)!r} has schema version {version}, newer than this "
            f"Millstream understands ({SCHEMA_VERSION}); upgrade Millstream"
        )


def _prepare_for_writing(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        _migrate(conn, path)


def _retry_locked(action: Callable[[], None]) -> None:
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    # Each migration and its version bump commit together: a crash leaves the old version whole.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise StoreError(
                f"Cannot use database {str(path)!r}: it holds tables but is not a "
                "Millstream database"
            )
        for number, ddl in MIGRATIONS:
            if number > version:
                for statement in _statements(ddl):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(ddl: str) -> list[str]:
    lines = [ln for ln in ddl.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# -- registry ---------------------------------------------------------------------------------
_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def get_store(path: Path) -> Store:
    """The process's store for the database at ``path`` (created on first use)."""
    store = _stores.get(path)
    if store is None:
        with _stores_lock:
            store = _stores.get(path)
            if store is None:
                store = Store(path)
                _stores[path] = store
    return store


def close_all() -> None:
    """Flush and stop every store of this process (at exit, and between tests)."""
    with _stores_lock:
        stores = list(_stores.values())
        _stores.clear()
    for store in stores:
        store.close()


atexit.register(close_all)


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads: it starts its own writers on demand
    # (the parent's queued writes are the parent's to flush).
    global _stores_lock
    _stores.clear()
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


HOSTNAME = _HOSTNAME
