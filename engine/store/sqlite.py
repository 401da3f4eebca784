"""SQLite as the store's backend: connections, pragmas, batched writes and point reads.

The writer owns a plain ``sqlite3`` connection: it writes a batch's rows in one go, with no
round trips between threads (under a busy GIL each such round trip could wait a whole switch
interval). Async reads go through aiosqlite connections of their own; point lookups on hot
paths use a read-only connection of the calling thread.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from millstream._engine.exceptions import StoreError
from millstream._engine.store.backend import Batch
from millstream._engine.store.migrations import SCHEMA_VERSION, Q, check_version, migrate

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000


class SQLiteBackend:
    """One SQLite file (see ``backend.Backend``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._point_readers = threading.local()
        self._transactors = threading.local()

    def connect_for_writing(self) -> sqlite3.Connection:
        """The writer's connection: WAL, migrated."""
        return open_for_writing(self.path)

    def write_batch(self, conn: sqlite3.Connection, batch: Batch) -> list[Any]:
        """Write one batch in one transaction (on the writer thread)."""
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.flows:
                conn.executemany(Q["upsert_flow"], batch.flows)
            if batch.flow_runs:
                _insert_many(conn, "upsert_flow_run", batch.flow_runs)
            if batch.task_runs:
                _insert_many(conn, "upsert_task_run", batch.task_runs)
            if batch.logs:
                conn.executemany(Q["insert_log"], batch.logs)
            if batch.caches:
                # After the task runs: a cache entry never points at an unrecorded run.
                conn.executemany(Q["upsert_cache"], batch.caches)
            if batch.heartbeats:
                conn.executemany(Q["update_heartbeats"], batch.heartbeats)
            for fn in batch.calls:
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

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on an aiosqlite connection of its own (rows are ``sqlite3.Row``)."""
        conn = await connect(self.path)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    def _point_conn(self) -> sqlite3.Connection:
        # A primary-key lookup takes microseconds: done on the calling thread through its own
        # read-only connection, rather than paying two thread hops through aiosqlite.
        conn: sqlite3.Connection | None = getattr(self._point_readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                f"{self.path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._point_readers.conn = conn
        return conn

    def point_read(self, name: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a named query, on this thread's read-only connection."""
        row: tuple[Any, ...] | None = self._point_conn().execute(Q[name], params).fetchone()
        return row

    def _transactor(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._transactors, "conn", None)
        if conn is None:
            # Microseconds per transaction on the caller's thread: no hop to the writer.
            conn = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._transactors.conn = conn
        return conn

    def execute_once(self, name: str, params: tuple[Any, ...]) -> int | None:
        """One named write statement as a transaction of its own, on this thread's writable
        connection: its row count, or None when SQLite could not start it at once (another
        writer got in between; the caller then takes the ``transact`` way)."""
        try:
            return int(self._transactor().execute(Q[name], params).rowcount)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None
            raise

    def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction on this thread's own
        writable connection (the file is migrated by the writer first)."""
        conn = self._transactor()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def point_read_all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a query (a named one, lists expanded), on this thread's read-only
        connection."""
        return list(self._point_conn().execute(sql, params).fetchall())


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
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Switching to WAL and migrating take exclusive locks that SQLite's busy handler does
        # not always wait for: two processes opening a new file at once retry here.
        _retry_locked(lambda: _prepare_for_writing(conn, path))
        check_version(conn.execute("PRAGMA user_version").fetchone()[0], path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"Cannot use database {str(path)!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


async def connect(path: Path) -> aiosqlite.Connection:
    """A read connection to ``path`` (the writer thread has opened and migrated the file)."""
    _check_path(path, write=False)
    try:
        conn = await aiosqlite.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    return conn


def vacuum(path: Path) -> None:
    """Rebuild the file to its smallest size (``millstream db vacuum``)."""
    with sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000) as conn:
        conn.execute(Q["vacuum"])


def _prepare_for_writing(conn: sqlite3.Connection, path: Path) -> None:
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
        migrate(conn, path)


def _retry_locked(action: Callable[[], None]) -> None:
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
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
