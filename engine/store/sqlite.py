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

from millstream._engine.exceptions import CorruptDatabase, ReadOnlyDatabase, StoreError
from millstream._engine.store.backend import Batch, ErrorKind
from millstream._engine.store.migrations import SCHEMA_VERSION, Q, check_version, expand, migrate

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
# An existing file up to this size is checked (PRAGMA quick_check) when the writer opens it: a
# few milliseconds per MB; a larger file is checked by ``millstream db check`` or on first error.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
# SQLite's primary result codes (the low byte of an extended code).
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _PROTOCOL, _NOTADB = (
    5,
    6,
    8,
    10,
    11,
    13,
    14,
    15,
    26,
)
_TRANSIENT = {_BUSY, _LOCKED, _READONLY, _IOERR, _FULL, _CANTOPEN, _PROTOCOL}
_FENCE_CHUNK = 500


class SQLiteBackend:
    """One SQLite file (see ``backend.Backend``)."""

    def __init__(self, path: Path, busy_timeout: float = BUSY_TIMEOUT_MS / 1000) -> None:
        self.path = path
        self.location = str(path)
        self.busy_timeout = busy_timeout
        self._point_readers = threading.local()
        self._transactors = threading.local()

    def connect_for_writing(self) -> sqlite3.Connection:
        """The writer's connection: WAL, migrated."""
        return open_for_writing(self.path, self.busy_timeout)

    def classify(self, exc: BaseException) -> ErrorKind:
        """Transient (locks, I/O, a full disk), corrupt (a damaged file) or data (a row)."""
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.ProgrammingError
        ):
            primary = _primary_code(exc)
            if primary in (_CORRUPT, _NOTADB):
                return "corrupt"
            if primary in _TRANSIENT or isinstance(exc, sqlite3.OperationalError):
                return "transient"
        return "data"

    def describe(self, exc: BaseException) -> str:
        """The cause, the file, and what to do."""
        return describe_error(exc, self.path, self.busy_timeout)

    def write_batch(self, conn: sqlite3.Connection, batch: Batch) -> list[Any]:
        """Write one batch in one transaction (on the writer thread)."""
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.fences:
                apply_fences(conn, batch)
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
            # SQLite has already rolled back after some errors (a full disk, an I/O error):
            # a second ROLLBACK would raise "no transaction is active" and hide the cause.
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise
        return results

    async def read(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` on an aiosqlite connection of its own (rows are ``sqlite3.Row``)."""
        conn = await connect(self.path, self.busy_timeout)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    async def read_only(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """``read`` for a database this process cannot write (a read-only file or folder)."""
        conn = await connect(self.path, self.busy_timeout, read_only=True)
        try:
            return await fn(conn)
        finally:
            await conn.close()

    def _point_conn(self) -> sqlite3.Connection:
        # A primary-key lookup takes microseconds: done on the calling thread through its own
        # read-only connection, rather than paying two thread hops through aiosqlite.
        conn: sqlite3.Connection | None = getattr(self._point_readers, "conn", None)
        if conn is None:
            conn = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=self.busy_timeout)
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

    def close(self) -> None:
        """Nothing to do: each thread's read-only connection closes with the thread."""


def _primary_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def describe_error(exc: BaseException, path: Path, busy_timeout: float) -> str:
    """A failed write as one phrase: the cause and what to do about it (the caller names the
    file)."""
    primary = _primary_code(exc)
    if primary in (_CORRUPT, _NOTADB):
        return corrupt_message(path, exc)
    if primary == _FULL:
        return (
            "database or disk is full (free disk space or raise the file-size limit; the "
            "queued writes are kept and written once it can)"
        )
    if primary == _IOERR:
        return (
            f"disk I/O error ({exc}; a full disk or a file-size limit can cause it; the "
            "queued writes are kept and written once it can)"
        )
    if primary in (_BUSY, _LOCKED):
        return (
            f"the database stayed locked by another connection past the busy timeout "
            f"({busy_timeout:g} s, MILLSTREAM_STORE_BUSY_TIMEOUT_SECONDS)"
        )
    if primary == _READONLY:
        return f"the database is read-only ({exc})"
    return f"{type(exc).__name__}: {exc}"


def corrupt_message(path: Path, exc: BaseException | str) -> str:
    """What to say of a damaged database file."""
    return (
        f"database file {str(path)!r} is damaged ({exc}): run `millstream db check` to see "
        "what is wrong, and restore the file from a backup (or move it aside to start afresh)"
    )


def apply_fences(conn: Any, batch: Batch) -> None:
    """Leave out the rows of runs claimed by another owner since this process took them."""
    ids = list(batch.fences)
    stale: set[bytes] = set()
    for start in range(0, len(ids), _FENCE_CHUNK):
        chunk = ids[start : start + _FENCE_CHUNK]
        for run_id, epoch in conn.execute(expand("select_epochs", len(chunk)), chunk):
            if epoch > batch.fences[run_id]:
                stale.add(run_id)
    if not stale:
        return
    batch.fenced |= stale
    batch.flow_runs = [
        r for r, f in zip(batch.flow_runs, batch.flow_run_fences, strict=True) if f not in stale
    ]
    batch.task_runs = [
        r for r, f in zip(batch.task_runs, batch.task_run_fences, strict=True) if f not in stale
    ]
    batch.heartbeats = [
        r for r, f in zip(batch.heartbeats, batch.heartbeat_fences, strict=True) if f not in stale
    ]
    batch.flow_run_fences = [f for f in batch.flow_run_fences if f not in stale]
    batch.task_run_fences = [f for f in batch.task_run_fences if f not in stale]
    batch.heartbeat_fences = [f for f in batch.heartbeat_fences if f not in stale]


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


def open_for_writing(
    path: Path, busy_timeout: float = BUSY_TIMEOUT_MS / 1000
) -> sqlite3.Connection:
    """The writer's connection: WAL, migrated. Every failure is a ``StoreError`` naming the path."""
    existed = path.is_file()
    try:
        _check_path(path, write=True)
    except StoreError as exc:
        if existed and os.access(path, os.R_OK):
            raise ReadOnlyDatabase(str(exc)) from None
        raise
    try:
        conn = sqlite3.connect(
            str(path),
            timeout=busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open database {str(path)!r}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if existed and path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
            _quick_check(conn, path)
        # Switching to WAL and migrating take exclusive locks that SQLite's busy handler does
        # not always wait for: two processes opening a new file at once retry here.
        _retry_locked(lambda: _prepare_for_writing(conn, path), busy_timeout)
        check_version(conn.execute("PRAGMA user_version").fetchone()[0], path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if _primary_code(exc) in (_CORRUPT, _NOTADB):
            raise CorruptDatabase(corrupt_message(path, exc)) from None
        if _primary_code(exc) == _READONLY:
            raise ReadOnlyDatabase(f"Cannot write database {str(path)!r}: {exc}") from None
        raise StoreError(f"Cannot use database {str(path)!r}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def read_only_uri(path: Path) -> str:
    """The URI of a read-only connection to ``path``. In a folder no one can write, with no
    WAL index file beside the database, SQLite cannot open a WAL database even read-only; no
    process can be writing it then, so it is opened as immutable."""
    uri = f"{path.as_uri()}?mode=ro"
    shm = path.with_name(path.name + "-shm")
    if not shm.exists() and not os.access(path.parent, os.W_OK):
        uri += "&immutable=1"
    return uri


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    found = [row[0] for row in conn.execute(Q["quick_check"]).fetchall()]
    if found != ["ok"]:
        raise CorruptDatabase(corrupt_message(path, "; ".join(map(str, found[:3]))))


def check_database(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` of the file, read-only: ``["ok"]`` or the problems found."""
    _check_path(path, write=False)
    if not path.exists():
        raise StoreError(f"Database {str(path)!r} does not exist")
    try:
        with sqlite3.connect(read_only_uri(path), uri=True) as conn:
            return [str(row[0]) for row in conn.execute(Q["integrity_check"]).fetchall()]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


async def connect(
    path: Path, busy_timeout: float = BUSY_TIMEOUT_MS / 1000, read_only: bool = False
) -> aiosqlite.Connection:
    """A read connection to ``path`` (the writer thread has opened and migrated the file)."""
    _check_path(path, write=False)
    try:
        if read_only:
            conn = await aiosqlite.connect(read_only_uri(path), uri=True, timeout=busy_timeout)
        else:
            conn = await aiosqlite.connect(str(path), timeout=busy_timeout)
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


def _retry_locked(action: Callable[[], None], busy_timeout: float) -> None:
    deadline = time.monotonic() + busy_timeout
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
