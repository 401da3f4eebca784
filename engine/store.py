"""The only aiosqlite user: connections, pragmas, migrations, the write-behind writer, typed reads.

Writes are queued from any thread and drained by one writer coroutine per database per process,
running on its own small event-loop thread, in batched ``BEGIN IMMEDIATE`` transactions. Callers
wait for the disk only at flush points (``flush``). Reads use their own connections.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import datetime as dt
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

from engine.exceptions import ObjectNotFound, StoreError
from engine.records import FlowRecord, FlowRun, LogRecord, TaskRun
from engine.states import State, StateDetails, StateType

T = TypeVar("T")

_BUSY_TIMEOUT_MS = 30_000
# How long queued writes may wait for company before the writer commits them (seconds).
_GROUP_COMMIT_DELAY = 0.01
_MAX_BATCH = 5_000
_HOSTNAME = socket.gethostname()


def _load_sql() -> tuple[list[tuple[int, str]], dict[str, str]]:
    text = resources.files("engine").joinpath("schema.sql").read_text(encoding="utf-8")
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


class Store:
    """One SQLite database: a write-behind queue, its writer, and read helpers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: collections.deque[Any] = collections.deque()
        self._wake_pending = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._open_future: concurrent.futures.Future[None] | None = None
        self._known_flows: dict[str, uuid.UUID] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        self._live: set[uuid.UUID] = set()
        self._reader: concurrent.futures.Future[aiosqlite.Connection] | None = None
        self._cache_memo: dict[str, tuple[bytes, dt.datetime | None]] = {}
        self._point_readers = threading.local()
        self.heartbeat_seconds = 10.0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> concurrent.futures.Future[None]:
        """Start the writer thread (once); the future resolves when the database is usable."""
        fut = self._open_future
        if fut is not None:
            return fut
        with self._lock:
            if self._open_future is None:
                self._open_future = concurrent.futures.Future()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._thread_main, args=(ready,), name="millstream-store", daemon=True
                )
                thread.start()
                self._thread = thread
                ready.wait()
            return self._open_future

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._writer())
        finally:
            loop.close()

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
        if urgent or not self._wake_pending:
            self._wake_pending = True
            loop = self._loop
            if loop is None:
                self.start()
                loop = self._loop
            assert loop is not None
            try:
                # Group commit: a plain write wakes the writer after a short delay so the
                # states of many runs share one transaction; a flush wakes it at once.
                loop.call_soon_threadsafe(self._wake_now if urgent else self._wake_soon)
            except RuntimeError:  # the writer loop is gone (interpreter shutdown)
                pass

    def _wake_soon(self) -> None:
        assert self._loop is not None and self._wake is not None
        self._loop.call_later(_GROUP_COMMIT_DELAY, self._wake.set)

    def _wake_now(self) -> None:
        assert self._wake is not None
        self._wake.set()

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

    def put_call(
        self, fn: Callable[[aiosqlite.Connection], Awaitable[Any]]
    ) -> concurrent.futures.Future[Any]:
        """Queue a function run inside the writer's next transaction; its result is returned."""
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
    async def _connect(self) -> aiosqlite.Connection:
        return await connect(self.path, write=True)

    async def _writer(self) -> None:
        assert self._open_future is not None and self._wake is not None
        try:
            conn = await self._connect()
        except BaseException as exc:
            self._open_future.set_exception(exc)
            self._fail_pending(exc)
            return
        self._open_future.set_result(None)
        heartbeats = asyncio.ensure_future(self._heartbeats())
        wake = self._wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                self._wake_pending = False
                while self._queue:
                    await self._drain_once(conn)
                if self._closed:
                    return
        finally:
            heartbeats.cancel()
            reader = self._reader
            if reader is not None and reader.done() and reader.exception() is None:
                await reader.result().close()
            await conn.close()

    def _fail_pending(self, exc: BaseException) -> None:
        # The database never opened: fail every flush so no caller waits forever.
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Flush):
                item.future.set_exception(exc)
            elif isinstance(item, tuple):
                item[1].set_exception(exc)

    async def _drain_once(self, conn: aiosqlite.Connection) -> None:
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
                entry = runs.get(run.id)
                line = _history_entry(state)
                if entry is None:
                    runs[run.id] = [kind, run, state, [line], result]
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
            results = await _write_batch(
                conn, flows, flow_runs, task_runs, logs, caches, [c[0] for c in calls]
            )
        except BaseException as exc:  # a failed batch is rolled back; tell whoever waits
            error = exc
        for (_, fut), res in zip(calls, results or [None] * len(calls), strict=False):
            if error is not None:
                fut.set_exception(error)
            elif isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        for marker in flushes:
            if error is not None:
                marker.future.set_exception(StoreError(f"Writing to {self.path} failed: {error}"))
            else:
                marker.future.set_result(None)

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the writer thread."""
        if self._open_future is None or self._loop is None:
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
    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on the read connection (separate from the writer's, shared by callers)."""
        await self.ensure_open()
        reader = self._reader
        if reader is None:
            reader = self._reader = asyncio.run_coroutine_threadsafe(
                # Opened from the store thread: aiosqlite's worker thread inherits its daemon
                # flag, so an open reader never holds up interpreter exit.
                connect(self.path, write=False),
                self._loop,  # type: ignore[arg-type]
            )
        conn = await asyncio.wrap_future(reader) if not reader.done() else reader.result()
        return await fn(conn)

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
    ) -> dict[tuple[str, str], bytes]:
        """Recorded results of a flow run's completed task runs, by (task key, call index)."""
        rows = await self.fetchall("select_completed_task_results", (db_id(flow_run_id),))
        return {(r["task_key"], r["dynamic_key"]): r["result"] for r in rows}

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

    async def _heartbeats(self) -> None:
        # Other hosts tell a live run from an orphan by this stamp (same host: by pid).
        while not self._closed:
            await asyncio.sleep(self.heartbeat_seconds)
            if self._live:
                ids = encode_json([i.hex for i in self._live])
                stamp = _ts(dt.datetime.now(dt.UTC))

                async def beat(
                    conn: aiosqlite.Connection, ids: str = ids, stamp: str | None = stamp
                ) -> None:
                    await conn.execute(Q["update_heartbeats"], (stamp, ids))

                self.put_call(beat)

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


async def _write_batch(
    conn: aiosqlite.Connection,
    flows: list[tuple[Any, ...]],
    flow_runs: list[tuple[Any, ...]],
    task_runs: list[tuple[Any, ...]],
    logs: list[tuple[Any, ...]],
    caches: list[tuple[Any, ...]],
    calls: list[Callable[[aiosqlite.Connection], Awaitable[Any]]],
) -> list[Any]:
    """Write one batch in one transaction."""
    results: list[Any] = []
    if (
        not calls
        and not flows
        and not logs
        and not caches
        and len(flow_runs) + len(task_runs) <= _CHUNK
        and (not flow_runs or not task_runs)
    ):
        # One statement: autocommit makes it atomic on its own, saving two round trips to
        # the database thread (this is the common flush of a small top-level flow).
        if flow_runs:
            await _insert_many(conn, "upsert_flow_run", flow_runs)
        elif task_runs:
            await _insert_many(conn, "upsert_task_run", task_runs)
        return results
    await conn.execute("BEGIN IMMEDIATE")
    try:
        if flows:
            await conn.executemany(Q["upsert_flow"], flows)
        if flow_runs:
            await _insert_many(conn, "upsert_flow_run", flow_runs)
        if task_runs:
            await _insert_many(conn, "upsert_task_run", task_runs)
        if logs:
            await conn.executemany(Q["insert_log"], logs)
        if caches:
            # After the task runs: a cache entry never points at an unrecorded run.
            await conn.executemany(Q["upsert_cache"], caches)
        for fn in calls:
            # A failing call must not lose the rest of the batch: isolate it in a savepoint.
            await conn.execute("SAVEPOINT call")
            try:
                results.append(await fn(conn))
                await conn.execute("RELEASE call")
            except Exception as exc:
                await conn.execute("ROLLBACK TO call")
                await conn.execute("RELEASE call")
                results.append(exc)
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return results


class _HistoryEntry(msgspec.Struct, array_like=True):
    """One line of a run's state history (msgspec writes ids and timestamps in C)."""

    id: uuid.UUID
    type: str
    name: str | None
    message: str | None
    timestamp: dt.datetime
    details: StateDetails | None


_lines_encoder = msgspec.json.Encoder()


# Rows per INSERT statement: one statement per chunk instead of one step per row means the
# writer hands work to the database thread (and re-takes the GIL) once per chunk. SQLite
# before 3.32 allows 999 parameters per statement, later versions 32766.
_MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_CHUNK = _MAX_PARAMS // 31
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


async def _insert_many(conn: aiosqlite.Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
    width = len(rows[0])
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        params = [value for row in chunk for value in row]
        await conn.execute(_multi_row_sql(name, len(chunk), width), params)


def _history_entry(state: State) -> _HistoryEntry:
    details = state.state_details
    return _HistoryEntry(
        state.id,
        state.type.value,
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
        state.type.value,
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
        state.type.value,
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
    )


def _row_state(row: sqlite3.Row) -> State | None:
    if row["state_type"] is None:
        return None
    data: Any = None
    if "result" in row.keys() and row["result"] is not None:
        from engine.resultref import StoredResult

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


async def connect(path: Path, *, write: bool) -> aiosqlite.Connection:
    """An aiosqlite connection to ``path`` with Millstream's pragmas (migrating if writing).

    Every failure becomes a ``StoreError`` naming the path.
    """
    _check_path(path, write)
    try:
        conn = await aiosqlite.connect(
            str(path), timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    try:
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if write:
            # Switching to WAL and migrating take exclusive locks that SQLite's busy handler
            # does not always wait for: two processes opening a new file at once retry here.
            await _retry_locked(lambda: _prepare_for_writing(conn, path))
        version = await _scalar(conn, "PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"Database {str(path)!r} has schema version {version}, newer than this "
                f"Millstream understands ({SCHEMA_VERSION}); upgrade Millstream"
            )
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise StoreError(f"Cannot use database {str(path)!r}: {exc}") from exc
    except BaseException:
        await conn.close()
        raise
    return conn


async def _prepare_for_writing(conn: aiosqlite.Connection, path: Path) -> None:
    if await _scalar(conn, "PRAGMA journal_mode") != "wal":
        await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = NORMAL")
    if await _scalar(conn, "PRAGMA user_version") < SCHEMA_VERSION:
        await _migrate(conn, path)


async def _retry_locked(action: Callable[[], Awaitable[None]]) -> None:
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            await action()
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def _scalar(conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    async with conn.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return row[0] if row is not None else None


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    # Each migration and its version bump commit together: a crash leaves the old version whole.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        version = await _scalar(conn, "PRAGMA user_version")
        if version == 0 and await _scalar(conn, "SELECT count(*) FROM sqlite_master"):
            raise StoreError(
                f"Cannot use database {str(path)!r}: it holds tables but is not a "
                "Millstream database"
            )
        for number, ddl in MIGRATIONS:
            if number > version:
                for statement in _statements(ddl):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
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


HOSTNAME = _HOSTNAME
