"""The store: one database's write-behind queue, writer and liveness threads, and reads.

Writes are queued from any thread and drained by one writer thread per database per process
in batched ``BEGIN IMMEDIATE`` transactions; callers wait for the disk only at flush points
(``flush``). A read first commits what this process queued (read-your-writes).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import datetime as dt
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from millstream._engine import clock
from millstream._engine.exceptions import (
    LeaseLost,
    NotSupportedError,
    ObjectNotFound,
    ReadOnlyDatabase,
    StoreError,
)
from millstream._engine.model.records import FlowRecord, FlowRun, LogRecord, TaskRun
from millstream._engine.model.states import State, StateType
from millstream._engine.store import encoding, rows
from millstream._engine.store.backend import Backend
from millstream._engine.store.drain import WriterOptions, run_writer
from millstream._engine.store.limits import LimitOperations
from millstream._engine.store.liveness import LivenessTimer
from millstream._engine.store.migrations import Q, expand
from millstream._engine.store.ops import StoreOperations
from millstream._engine.store.sqlite import SQLiteBackend
from millstream._engine.store.suspended import SuspendOperations
from millstream._engine.store.taskqueue import TaskQueueOperations
from millstream._engine.store.writer import (
    CacheWrite,
    CallWrite,
    FlowWrite,
    FlushMarker,
    HeartbeatWrite,
    LogWrite,
    RunStateWrite,
    WriteQueue,
)

T = TypeVar("T")
R = TypeVar("R", FlowRun, TaskRun)

HOSTNAME = socket.gethostname()


def _snapshot(run: R) -> R:
    # A shallow copy, in C (~0.1 us): the row written is the run as it was when its state was
    # queued, whatever the live record does meanwhile.
    copy: R = run.__copy__()  # type: ignore[attr-defined]
    return copy


class Store(StoreOperations, LimitOperations, TaskQueueOperations, SuspendOperations):
    """One database: a write-behind queue, its writer, and typed reads."""

    def __init__(self, path: Path) -> None:
        from millstream._engine.settings import get_current_settings

        settings = get_current_settings()
        self.path = path
        url = settings.database_url
        self.backend: Backend
        if url:
            from millstream._engine.store.postgres import PostgresBackend

            self.backend = PostgresBackend(url, path)
            # Where messages say the runs are: the URL, its password masked.
            self.location = self.backend.location
        else:
            self.backend = SQLiteBackend(path, settings.store.busy_timeout_seconds)
            self.location = str(path)
        self._options = WriterOptions(settings.store.write_retry_seconds, self._on_fenced)
        self.line_cap = settings.logging.max_line_chars
        self.every_task_durable = settings.durability == "every_task"
        # Fencing: for each flow run of this process (top-level or subflow), its root's id and
        # the lease epoch held for it; and the roots found claimed by another owner since.
        self._fences: dict[uuid.UUID | None, tuple[bytes, int]] = {}
        self._lost: dict[uuid.UUID, str] = {}
        self._queue = WriteQueue(settings.store.queue_max_items)
        self._lock = threading.Lock()
        self._open_future: concurrent.futures.Future[None] | None = None
        self._known_flows: dict[str, uuid.UUID] = {}
        self._closed = False
        self._thread: threading.Thread | None = None
        self._timer: LivenessTimer | None = None
        self._live: set[uuid.UUID] = set()
        self._cache_memo: dict[str, tuple[bytes, dt.datetime | None]] = {}
        self.heartbeat_seconds = settings.serve.heartbeat_seconds
        self.poll_seconds = settings.serve.poll_interval

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> concurrent.futures.Future[None]:
        """Start the writer thread (once); the future resolves when the database is usable."""
        fut = self._open_future
        if fut is not None:
            return fut
        with self._lock:
            if self._open_future is None:
                opened: concurrent.futures.Future[None] = concurrent.futures.Future()
                self._open_future = opened
                thread = threading.Thread(
                    target=run_writer,
                    args=(
                        self._queue,
                        self.backend,
                        opened,
                        lambda: self._closed,
                        self._options,
                    ),
                    name="millstream-store",
                    daemon=True,
                )
                self._thread = self._queue.writer_thread = thread
                thread.start()
                opened.add_done_callback(self._start_timer)
            return self._open_future

    def _start_timer(self, opened: concurrent.futures.Future[None]) -> None:
        if not opened.cancelled() and opened.exception() is None and not self._closed:
            self._timer = LivenessTimer(self)
            self._timer.start()

    async def ensure_open(self, *, for_reading: bool = False) -> None:
        """Wait (from any event loop) until the database is open and migrated; with
        ``for_reading``, a database this process can only read is fine too."""
        fut = self.start()
        if not fut.done():
            # Shielded: a caller cancelled while waiting must not cancel the store's opening
            # for every other caller.
            await asyncio.shield(asyncio.wrap_future(fut))
        if for_reading and isinstance(fut.exception(), ReadOnlyDatabase):
            return
        fut.result()

    async def _readable(self) -> bool:
        """Open the database; False when it can only be read here (read-only file or
        folder): reads still work, through read-only connections."""
        try:
            await self.ensure_open()
        except ReadOnlyDatabase:
            return False
        return True

    def ensure_open_sync(self, *, for_reading: bool = False) -> None:
        """Block until the database is open and migrated; raises ``StoreError`` if it can't be
        (with ``for_reading``, not when it can be read but not written here)."""
        fut = self.start()
        if for_reading and isinstance(fut.exception(), ReadOnlyDatabase):
            return
        fut.result()

    def close(self, timeout: float = 10.0) -> None:
        """Flush and stop the writer and liveness threads."""
        if self._open_future is None:
            return
        try:
            if self._open_future.exception(timeout) is None:
                self.flush_sync(timeout)
        except Exception:
            pass
        self._closed = True
        if self._timer is not None:
            self._timer.stop()
        try:
            self._queue.put(FlushMarker(), urgent=True)
        except RuntimeError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.backend.close()

    @property
    def queue_high_water(self) -> int:
        """The most items the write queue held at once (it never exceeds the bound)."""
        return self._queue.high_water

    # -- the hot path: queue writes from any thread -------------------------------------------
    def _put(self, item: Any, urgent: bool = False) -> None:
        self._queue.put(item, urgent)
        if self._open_future is None:
            self.start()

    def put_flow_run_state(self, run: FlowRun, state: State, result: bytes | None = None) -> None:
        """Queue a flow run (a snapshot of its current fields) together with a new state of it.

        Its first state (Pending) checks what the row will hold: a name or parameter that
        cannot be recorded raises ``ValueError`` naming it, here, before anything is queued.
        """
        if state.type is StateType.PENDING:
            check_flow_run(run)
        fence: tuple[bytes, int] | None
        if run.parent_flow_run_id is None:
            fence = (run.id.bytes, run.epoch)
            self._fences[run.id] = fence
        else:
            fence = self._fences.get(run.id) or self._fences.get(run.parent_flow_run_id)
            if fence is not None:
                self._fences[run.id] = fence
                if state.is_final():
                    del self._fences[run.id]
        self._put(RunStateWrite(_snapshot(run), state, result, False, fence))

    def put_task_run_state(self, run: TaskRun, state: State, result: bytes | None = None) -> None:
        """Queue a task run (a snapshot of its current fields) together with a new state of it."""
        self._put(
            RunStateWrite(_snapshot(run), state, result, True, self._fences.get(run.flow_run_id))
        )

    def put_logs(self, records: Iterable[LogRecord]) -> None:
        """Queue log lines."""
        cap = self.line_cap
        batch = [rows.log_row(record, cap) for record in records]
        if batch:
            self._put(LogWrite(batch))

    def put_log_lines(
        self,
        lines: Iterable[
            tuple[uuid.UUID | None, uuid.UUID | None, int, str, str, float, dict[str, Any] | None]
        ],
    ) -> None:
        """Queue log lines given as ``(flow run id, task run id, level, logger name, message,
        created, extra)`` with ``created`` in seconds since the epoch (the log thread's form)
        and ``extra`` the line's extra fields (None: none)."""
        cap = self.line_cap
        batch = [rows.log_line_row(*line, cap) for line in lines]
        if batch:
            self._put(LogWrite(batch))

    def put_heartbeat(self, run_ids: list[uuid.UUID], stamp: dt.datetime) -> None:
        """Queue a heartbeat stamp for these flow runs."""
        fences = self._fences
        self._put(HeartbeatWrite(run_ids, stamp, [fences.get(i) for i in run_ids]))

    def put_call(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        """Queue ``fn(conn)`` to run inside the writer's next transaction; the future gets its
        result. ``fn`` takes the writer's ``sqlite3.Connection``; an ``async def fn(conn)``
        written against aiosqlite's ``execute``/``executemany`` works too. For the store's own
        operations (and tests): the rest of the engine calls typed methods."""
        call = CallWrite(fn)
        self._put(call, urgent=True)
        return call.future

    def flow_id(self, name: str) -> uuid.UUID:
        """The id of the flow called ``name`` (queued for creation the first time it is seen)."""
        flow_id = self._known_flows.get(name)
        if flow_id is None:
            flow_id = uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:flow:{name}")
            self._known_flows[name] = flow_id
            self._put(FlowWrite(FlowRecord(id=flow_id, name=name, created=dt.datetime.now(dt.UTC))))
        return flow_id

    def flush_future(self) -> concurrent.futures.Future[None]:
        """A future resolved once everything queued so far is durable."""
        marker = FlushMarker()
        opened = self._open_future
        if opened is not None and opened.done() and opened.exception() is not None:
            # The writer never opened: nobody will drain the queue, fail now.
            marker.future.set_exception(opened.exception())
            return marker.future
        self._put(marker, urgent=True)
        return marker.future

    async def flush(self) -> None:
        """Wait, from any event loop, until everything queued so far is durable."""
        await asyncio.wrap_future(self.flush_future())

    async def flush_run(self, flow_run_id: uuid.UUID) -> None:
        """``flush``, then raise ``LeaseLost`` if another owner claimed this run meanwhile
        (its writes from here were refused: the run belongs to the other owner now)."""
        await self.flush()
        self.check_lease(flow_run_id)

    def check_lease(self, flow_run_id: uuid.UUID) -> None:
        """Raise ``LeaseLost`` if the writer found this run claimed by another owner."""
        lost = self._lost.pop(flow_run_id, None)
        if lost is not None:
            raise LeaseLost(lost)

    def lease_lost(self, flow_run_id: uuid.UUID) -> bool:
        """Whether the writer found this run claimed by another owner."""
        return flow_run_id in self._lost

    def _on_fenced(self, roots: set[bytes]) -> None:
        # On the writer thread: a run of ours was claimed by another owner. Its rows were left
        # out; stop the run here (it is the other owner's now).
        from millstream._engine.store.liveness import request_stop

        for root in roots:
            run_id = uuid.UUID(bytes=root)
            self._lost[run_id] = (
                f"Flow run {run_id} was taken over by another process (its lease expired); "
                f"this process abandoned it and its later writes to {self.path} were refused"
            )
            request_stop(run_id)

    def flush_sync(self, timeout: float | None = None) -> None:
        """Block until everything queued so far is durable."""
        self.flush_future().result(timeout)

    # -- reads --------------------------------------------------------------------------------
    def has_unwritten(self) -> bool:
        """Whether something this process queued is not committed yet."""
        # The queue first, then the flag: the writer raises the flag before it takes anything
        # off the queue, so an item queued before this call is seen in one or the other.
        queue = self._queue
        return bool(queue.items) or queue.writing or bool(queue.carried)

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection of its own (separate from the writer's).

        What this process queued before the read is committed first (the store is
        write-behind, reads must still see the process's own writes); with nothing queued
        the read costs no more than before.
        """
        if not await self._readable():
            return await self.backend.read_only(fn)
        if self.has_unwritten():
            try:
                await self.flush()
            except StoreError:
                pass  # the writer cannot write now (a full disk, a lock): read what is there
        return await self.backend.read(fn)

    async def fetchone(self, query: str, params: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        """One row of a named query (``query`` is a key of the named queries)."""
        found = await self.fetchall_sql(Q[query], params)
        return found[0] if found else None

    async def fetchall(self, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """All rows of a named query (``query`` is a key of the named queries)."""
        return await self.fetchall_sql(Q[query], params)

    async def fetchall_sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """All rows of a read-only query built by the store (and ad-hoc ones in tests)."""

        async def run(conn: aiosqlite.Connection) -> list[sqlite3.Row]:
            async with conn.execute(sql, params) as cursor:
                found: list[sqlite3.Row] = list(await cursor.fetchall())
            return found

        return await self.read(run)

    # -- cache entries --------------------------------------------------------------------------
    async def lookup_cache(self, key: str) -> bytes | None:
        """The recorded result for a cache key, unless missing or expired."""
        hit = self._cache_memo.get(key)
        if hit is None:
            await self._readable()
            row = self.backend.point_read("select_cache", (key,))
            if row is None:
                return None
            hit = (row[0], rows.parse_ts(row[1]))
            self._cache_memo[key] = hit
        blob, expiration = hit
        if expiration is not None and expiration <= clock.now():
            return None
        return blob

    def put_cache(
        self, key: str, blob: bytes, expiration: dt.datetime | None, task_run_id: uuid.UUID
    ) -> None:
        """Record a cache entry (visible to this process at once, to others once written)."""
        self._cache_memo[key] = (blob, expiration)
        self._put(CacheWrite(key, blob, expiration, task_run_id))

    # -- runs ---------------------------------------------------------------------------------
    async def read_flow_run_or_none(self, flow_run_id: uuid.UUID | str) -> FlowRun | None:
        """The flow run with this id, or None."""
        row = await self.fetchone("select_flow_run", (rows.db_id(flow_run_id),))
        return rows.flow_run_from_row(row) if row is not None else None

    async def read_flow_run(self, flow_run_id: uuid.UUID | str) -> FlowRun:
        """The flow run with this id; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_flow_run", (rows.db_id(flow_run_id),))
        if row is None:
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found in {self.location}")
        return rows.flow_run_from_row(row)

    async def read_task_run(self, task_run_id: uuid.UUID | str) -> TaskRun:
        """The task run with this id; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_task_run", (rows.db_id(task_run_id),))
        if row is None:
            raise ObjectNotFound(f"Task run {str(task_run_id)!r} not found in {self.location}")
        return rows.task_run_from_row(row)

    async def read_task_runs_of(self, flow_run_id: uuid.UUID | str) -> list[TaskRun]:
        """The task runs of a flow run, in creation order."""
        found = await self.fetchall("select_task_runs_of_flow_run", (rows.db_id(flow_run_id),))
        return [rows.task_run_from_row(r) for r in found]

    async def read_flow_run_states(self, flow_run_id: uuid.UUID | str) -> list[State]:
        """Every state a flow run went through, oldest first; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_flow_run_history", (rows.db_id(flow_run_id),))
        if row is None:
            raise ObjectNotFound(f"Flow run {str(flow_run_id)!r} not found in {self.location}")
        return rows.parse_history(row[0], rows.as_uuid(flow_run_id), "flow_run_id")

    async def read_task_run_states(self, task_run_id: uuid.UUID | str) -> list[State]:
        """Every state a task run went through, oldest first; raises ``ObjectNotFound``."""
        row = await self.fetchone("select_task_run_history", (rows.db_id(task_run_id),))
        if row is None:
            raise ObjectNotFound(f"Task run {str(task_run_id)!r} not found in {self.location}")
        return rows.parse_history(row[0], rows.as_uuid(task_run_id), "task_run_id")

    async def read_flow_run_result(self, flow_run_id: uuid.UUID | str) -> bytes | None:
        """The recorded result envelope of a flow run (None when none was recorded)."""
        row = await self.fetchone("select_flow_run_result", (rows.db_id(flow_run_id),))
        return row[0] if row is not None else None

    async def read_completed_task_results(
        self, flow_run_id: uuid.UUID | str
    ) -> dict[tuple[str, str], tuple[bytes, str | None]]:
        """Recorded results of a flow run's completed task runs, with the code fingerprint each
        ran with, by (task key, call index); a call recorded more than once: its latest."""
        found = await self.fetchall("select_completed_task_results", (rows.db_id(flow_run_id),))
        return {
            (r["task_key"], r["dynamic_key"]): (r["result"], r["code_fingerprint"]) for r in found
        }

    # -- liveness -----------------------------------------------------------------------------
    def track_live(self, flow_run_id: uuid.UUID) -> None:
        """Heartbeat this flow run while it is live in this process."""
        self._live.add(flow_run_id)

    def untrack_live(self, flow_run_id: uuid.UUID) -> None:
        """Stop heartbeating this flow run (its rows are queued: its fence can go)."""
        self._live.discard(flow_run_id)
        self._fences.pop(flow_run_id, None)

    @property
    def live_runs(self) -> set[uuid.UUID]:
        """Top-level flow runs live in this process."""
        return set(self._live)

    def cancelling_among(self, run_ids: list[uuid.UUID]) -> list[uuid.UUID]:
        """Those of ``run_ids`` in state Cancelling (read on the calling thread)."""
        sql = expand("select_cancelling", len(run_ids))
        found = self.backend.point_read_all(sql, tuple(rows.encode_ids(run_ids)))
        return [uuid.UUID(bytes=r[0]) for r in found]


def check_flow_run(run: FlowRun) -> None:
    """Raise ``ValueError`` naming the field when a flow run cannot be recorded as it is."""
    encoding.check_text(run.name, "flow_run_name")
    encoding.check_parameters(run.parameters)
    if run.tags:
        for tag in run.tags:
            encoding.check_text(tag, "tag")


# -- registry ---------------------------------------------------------------------------------
_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


# Set while a task body runs in a worker process (a process pool's, a Dask worker): such a
# body never opens the database (its outcome is recorded by the orchestrating process), so
# anything in it that would (calling a task or a flow, reading runs) is refused, with this text.
no_store_here: ContextVar[str | None] = ContextVar("no_store_here", default=None)


def get_store(path: Path) -> Store:
    """The process's store for the database at ``path`` (created on first use)."""
    refusal = no_store_here.get()
    if refusal is not None:
        raise NotSupportedError(refusal)
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


def open_store_paths() -> list[Path]:
    """The databases this process has a store for (a test harness closes the ones it opened)."""
    with _stores_lock:
        return list(_stores)


def close_store(path: Path) -> None:
    """Flush and stop the store of the database at ``path``, if this process has one."""
    with _stores_lock:
        store = _stores.pop(path, None)
    if store is not None:
        store.close()


atexit.register(close_all)


_inherited: list[Store] = []


def _forget_after_fork() -> None:
    # A forked child has none of the parent's threads: it starts its own writers on demand
    # (the parent's queued writes are the parent's to flush).
    global _stores_lock
    # Kept, never closed or collected here: their connections are the parent's (a PostgreSQL
    # one closed by the child would end the parent's session).
    _inherited.extend(_stores.values())
    _stores.clear()
    _stores_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
