"""psycopg connections shaped as the store's SQLite code expects them (the PostgreSQL
backend's half that is not SQL): rows that index by name, ``sqlite3``- and aiosqlite-shaped
connection facades, the pool of idle read connections, and whether the server cut one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from millstream._engine.exceptions import StoreError
from millstream._engine.store import pg_dialect

try:
    import psycopg
    from psycopg.adapt import AdaptersMap, Dumper, Loader
    from psycopg.pq import TransactionStatus

    _IDLE = TransactionStatus.IDLE
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg = None  # type: ignore[assignment]


def _require_psycopg() -> None:
    if psycopg is None:
        raise StoreError(
            "MILLSTREAM_DATABASE_URL names a PostgreSQL database, which needs the 'postgres' "
            "extra: pip install 'millstream[postgres]'"
        )


# -- rows and parameters ----------------------------------------------------------------------
class Row(tuple[Any, ...]):
    """A row like ``sqlite3.Row``: by position, or by column name (``row["id"]``)."""

    _names: dict[str, int] = {}  # noqa: RUF012 - each row class sets its own

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        """The column names, in order (as ``sqlite3.Row.keys``)."""
        return list(self._names)


_row_classes: dict[tuple[str, ...], type[Row]] = {}


def _row_class(names: tuple[str, ...]) -> type[Row]:
    cls = _row_classes.get(names)
    if cls is None:
        positions: dict[str, int] = {}
        for i, name in enumerate(names):
            positions.setdefault(name, i)
        cls = _row_classes[names] = type("Row", (Row,), {"_names": positions})
    return cls


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
    description = cursor.description
    if description is None:
        return tuple
    cls = _row_class(tuple(d.name for d in description))
    return cls


def _adapters() -> Any:
    class BoolAsInt(Dumper):
        # SQLite stores booleans as integers, and so do the translated tables.
        oid = psycopg.adapters.types["int8"].oid

        def dump(self, obj: Any) -> bytes:
            return b"1" if obj else b"0"

    class NumericAsNumber(Loader):
        # SQLite's sums and averages are ints or floats; PostgreSQL's sum() of a bigint is a
        # numeric, which would arrive as a Decimal that float arithmetic refuses.
        def load(self, data: Any) -> Any:
            text = bytes(data).decode()
            return int(text) if text.lstrip("-").isdigit() else float(text)

    adapters = AdaptersMap(psycopg.adapters)
    adapters.register_dumper(bool, BoolAsInt)
    adapters.register_loader("numeric", NumericAsNumber)
    return adapters


_ADAPTERS: Any = None


def connect_kwargs() -> dict[str, Any]:
    """What ``psycopg.connect`` takes for a store connection (autocommit, our adapters and
    rows); ``StoreError`` naming the extra when psycopg is missing."""
    global _ADAPTERS
    _require_psycopg()
    if _ADAPTERS is None:
        _ADAPTERS = _adapters()

    return {"autocommit": True, "context": _Context(), "row_factory": _row_factory}


class _Context:
    """The adapters every connection starts from (psycopg's ``AdaptContext``)."""

    connection = None

    @property
    def adapters(self) -> Any:
        return _ADAPTERS


# -- sqlite3-shaped connections over psycopg ---------------------------------------------------
class _SyncCursor:
    """What ``sqlite3.Connection.execute`` returns, over a psycopg cursor."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.rowcount = cursor.rowcount
        self.lastrowid = None
        self.description = cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall() if self._cursor.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())

    def close(self) -> None:
        self._cursor.close()


class SyncConnection:
    """The surface of ``sqlite3.Connection`` that queued calls use, on a psycopg connection:
    SQLite statements are translated, rows are ``Row``."""

    row_factory: Any = None  # accepted and ignored: rows always index by name too

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _SyncCursor:
        return _SyncCursor(self.conn.execute(pg_dialect.query(sql), tuple(params)))

    def executemany(self, sql: str, params: Any) -> _SyncCursor:
        cursor = self.conn.cursor()
        cursor.executemany(pg_dialect.query(sql), [tuple(p) for p in params])
        return _SyncCursor(cursor)

    def close(self) -> None:
        self.conn.close()


class _AsyncCursor:
    """What aiosqlite's ``execute`` gives: awaitable, and an async context manager. The
    statement runs on a worker thread of the loop, its rows fetched there in the same hop."""

    def __init__(self, conn: Any, sql: str, params: Sequence[Any]) -> None:
        self._conn, self._sql, self._params = conn, sql, tuple(params)
        self._rows: list[Any] | None = None
        self._done = False
        self.rowcount = -1

    def _execute(self) -> tuple[int, list[Any] | None]:
        cursor = self._conn.execute(pg_dialect.query(self._sql), self._params)
        rows = cursor.fetchall() if cursor.description is not None else None
        return cursor.rowcount, rows

    async def _run(self) -> _AsyncCursor:
        if not self._done:
            loop = asyncio.get_running_loop()
            self.rowcount, self._rows = await loop.run_in_executor(None, self._execute)
            self._done = True
        return self

    def __await__(self) -> Any:
        return self._run().__await__()

    async def __aenter__(self) -> _AsyncCursor:
        return await self._run()

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetchone(self) -> Any:
        await self._run()
        return self._rows.pop(0) if self._rows else None

    async def fetchall(self) -> list[Any]:
        await self._run()
        rows, self._rows = self._rows or [], []
        return rows


class AsyncConnection:
    """The surface of an aiosqlite connection that readers use, over a pooled blocking
    psycopg connection (as aiosqlite runs sqlite3 on a thread)."""

    row_factory: Any = None

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _AsyncCursor:
        return _AsyncCursor(self.conn, sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await _AsyncCursor(self.conn, sql, params).fetchall()


class ReadPool:
    """Idle read connections, shared by every thread and event loop of the process (a new
    connection costs milliseconds; a read, a fraction of one)."""

    def __init__(self, connect: Callable[[], Any], max_idle: int = 8) -> None:
        self._connect = connect
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._closed = False

    def take_idle(self) -> Any:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def new(self) -> Any:
        return self._connect()

    def give_back(self, conn: Any) -> None:
        idle = not is_lost(conn) and conn.info.transaction_status == _IDLE
        with self._lock:
            if idle and not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def discard_idle(self) -> None:
        """Close the idle connections (the server cut one: it may have cut them all)."""
        with self._lock:
            conns, self._idle = self._idle, []
        for conn in conns:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._idle = self._idle, []
        for conn in conns:
            conn.close()


def is_lost(conn: Any) -> bool:
    """Whether psycopg found ``conn`` closed or cut by the server."""
    return bool(conn.closed or conn.broken)
