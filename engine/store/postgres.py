"""PostgreSQL as the store's backend (``MILLSTREAM_DATABASE_URL=postgresql://…``), via psycopg 3.

psycopg 3 has a blocking and an asyncio API over one adapter stack: the writer thread keeps a
blocking connection and writes each batch in one transaction (``executemany`` runs in
pipeline mode: one round trip for many rows), async reads get an ``AsyncConnection`` each,
and point lookups a blocking connection of the calling thread, as with SQLite. Statements are
schema.sql's, translated by ``pg_dialect``; rows read back index by position and by name, like
``sqlite3.Row``, so ``rows`` and the readers serve both backends unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from millstream._engine.exceptions import StoreError
from millstream._engine.store import pg_dialect
from millstream._engine.store.backend import Batch, ErrorKind
from millstream._engine.store.migrations import MIGRATIONS, SCHEMA_VERSION, Q, statements
from millstream._engine.store.pg_conn import (
    AsyncConnection,
    ReadPool,
    SyncConnection,
    connect_kwargs,
    is_lost,
)

try:
    import psycopg
except ImportError:  # pragma: no cover - depends on the installed extras
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")

logger = logging.getLogger("millstream.store")

# Any fixed number: the key of the advisory lock that lets one process migrate at a time.
_MIGRATION_LOCK = 7_316_221_012


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    return re.sub(r"^(\w[\w+.-]*://[^:/@]*:)[^@]*@", r"\1***@", url)


# -- the backend ----------------------------------------------------------------------------------
class PostgresBackend:
    """One PostgreSQL database (see ``backend.Backend``)."""

    def __init__(self, url: str, path: Any = None) -> None:
        if not is_url(url):
            raise StoreError(
                f"MILLSTREAM_DATABASE_URL must be a postgresql:// URL, got {mask_url(url)!r} "
                "(leave it unset to keep the SQLite file at MILLSTREAM_DATABASE_PATH)"
            )
        self.url = url
        self.location = mask_url(url)
        # Where the SQLite file would be: kept only so code that names ``path`` still runs.
        self.path = path
        self._local = threading.local()
        self._point_conns: list[Any] = []
        self._lock = threading.Lock()
        self._pool = ReadPool(self._connect)

    def _connect(self) -> Any:
        kwargs = connect_kwargs()
        try:
            return psycopg.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"Cannot open database {self.location!r}: {exc}") from exc

    def connect_for_writing(self) -> SyncConnection:
        """The writer's connection, the schema migrated."""
        conn = self._connect()
        try:
            migrate(conn, self.location)
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"Cannot use database {self.location!r}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return SyncConnection(conn)

    def classify(self, exc: BaseException) -> ErrorKind:
        """Transient (the server unreachable, a lock or serialization conflict) or data (a
        row the server refuses); PostgreSQL keeps its own pages whole, so never corrupt."""
        if isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected):
            return "transient"
        if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
            return "transient"
        if isinstance(exc, psycopg.OperationalError):
            return "transient"
        return "data"

    def describe(self, exc: BaseException) -> str:
        """The cause, as the server gave it (the caller names the database)."""
        return f"{type(exc).__name__}: {exc}"

    def write_batch(self, facade: SyncConnection, batch: Batch) -> list[Any]:
        """Write one batch in one transaction (on the writer thread).

        A connection the server cut (a restart, ``pg_terminate_backend``, a network blip)
        is replaced first: the writer's retries of a batch whose connection was lost go to a
        new one (a failed connect is an ``OperationalError``: transient, retried in turn).
        PostgreSQL text cannot hold NUL: a batch refused for one is written with each NUL of
        its rows' text replaced by U+FFFD (only then: the usual batch is not scanned)."""
        if is_lost(facade.conn):
            facade.conn.close()
            facade.conn = psycopg.connect(self.url, **connect_kwargs())
            logger.warning("Reconnected the store's writer to %s", self.location)
        try:
            return self._write(facade, batch)
        except psycopg.DataError:
            if not _replace_nul(batch):
                raise
        return self._write(facade, batch)

    def _write(self, facade: SyncConnection, batch: Batch) -> list[Any]:
        from millstream._engine.store.sqlite import _run_call, apply_fences

        conn = facade.conn
        results: list[Any] = []
        if not batch.fences and not _rows_of(batch) and len(batch.calls) == 1:
            # A lone call (a claim, say): its failure loses nothing else, so no savepoint.
            try:
                with conn.transaction():
                    results.append(_run_call(batch.calls[0], cast(Any, facade)))
            except Exception as exc:
                if is_lost(conn):
                    raise  # not the call's failure: the batch is retried on a new connection
                results.append(exc)
            return results
        if not batch.fences and not batch.calls:
            # Rows only: BEGIN, every statement and COMMIT go out in one pipeline, with one
            # wait for the server at the end instead of one per statement.
            with conn.pipeline(), conn.transaction():
                cursor = conn.cursor()
                for name, rows in _rows_of(batch):
                    cursor.executemany(pg_dialect.query(Q[name]), rows)
            return results
        with conn.transaction():
            if batch.fences:
                # Inside the transaction: the epochs read are the ones the rows commit against.
                apply_fences(facade, batch)
            rows_first = _rows_of(batch)
            if rows_first:
                with conn.pipeline():
                    cursor = conn.cursor()
                    for name, rows in rows_first:
                        cursor.executemany(pg_dialect.query(Q[name]), rows)
            # Calls read their statements' results at once: outside the pipeline.
            for fn in batch.calls:
                # A failing call must not lose the rest of the batch: a savepoint of its own.
                try:
                    with conn.transaction():
                        results.append(_run_call(fn, cast(Any, facade)))
                except Exception as exc:
                    if is_lost(conn):
                        raise
                    results.append(exc)
        return results

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection of its own (rows are ``Row``)."""
        conn = self._pool.take_idle()
        if conn is not None:
            try:
                return await self._read_on(conn, fn)
            except psycopg.OperationalError:
                # ``broken``, not ``closed``: a failed read's connection is closed anyway.
                if not conn.broken:
                    raise
            # An idle connection the server cut (a restart, say): the others are likely dead
            # too; read again on a new one.
            self._pool.discard_idle()
        conn = await asyncio.get_running_loop().run_in_executor(None, self._pool.new)
        return await self._read_on(conn, fn)

    async def _read_on(self, conn: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
        try:
            result = await fn(AsyncConnection(conn))
        except BaseException:
            conn.close()  # its state is unknown
            raise
        self._pool.give_back(conn)
        return result

    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one transaction on this thread's own connection, committed
        before it returns. Such transactions (flow control's slots) take one advisory lock
        first: they follow each other as SQLite's ``BEGIN IMMEDIATE`` writers do, so a check
        of free slots and the lease it grants cannot interleave with another's."""
        started = False

        def run(conn: Any) -> T:
            nonlocal started
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_TRANSACT_LOCK,))
                started = True
                return fn(SyncConnection(conn))

        conn = self._point_conn()
        try:
            return run(conn)
        except psycopg.OperationalError:
            # Again on a new connection only if the old one was dead before ``fn`` ran: once
            # it has, a lost COMMIT may have been applied.
            if started or not is_lost(conn):
                raise
        return run(self._point_conn())

    def execute_once(self, name: str, params: tuple[Any, ...]) -> int | None:
        """Always None: one statement alone is not serialized against the others here (READ
        COMMITTED), so callers take the ``transact`` way."""
        return None

    async def read_only(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``read``: what a role may write is the server's business, reads work the same."""
        return await self.read(fn)

    def _point_conn(self) -> Any:
        old = getattr(self._local, "conn", None)
        if old is not None and not is_lost(old):
            return old
        conn = self._connect()
        self._local.conn = conn
        with self._lock:
            if old in self._point_conns:  # not when ``close`` has closed them all
                self._point_conns.remove(old)
            self._point_conns.append(conn)
        if old is not None:
            old.close()
        return conn

    def _point_query(self, sql: str, params: tuple[Any, ...]) -> Any:
        conn = self._point_conn()
        try:
            return conn.execute(pg_dialect.query(sql), params)
        except psycopg.OperationalError:
            if not is_lost(conn):
                raise
        # The server cut this thread's connection (a restart, say): a read, safe to repeat.
        return self._point_conn().execute(pg_dialect.query(sql), params)

    def point_read(self, name: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a named query, on this thread's connection."""
        row: tuple[Any, ...] | None = self._point_query(Q[name], params).fetchone()
        return row

    def point_read_all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a query (a named one, lists expanded), on this thread's connection."""
        return list(self._point_query(sql, params).fetchall())

    def close(self) -> None:
        """Close the idle read connections and the point-read ones of every thread."""
        self._pool.close()
        with self._lock:
            conns, self._point_conns = self._point_conns, []
        for conn in conns:
            conn.close()

    def vacuum(self) -> None:
        """``VACUUM`` (outside a transaction, as PostgreSQL requires)."""
        with self._connect() as conn:
            conn.execute("VACUUM")


# The advisory lock that serializes ``transact`` calls (an arbitrary constant of ours).
_TRANSACT_LOCK = 0x4D696C6C5354


def _replace_nul(batch: Batch) -> bool:
    """Replace each NUL of the batch's row texts by U+FFFD; whether there was one."""
    found = False
    for field in ("flows", "flow_runs", "task_runs", "logs", "caches", "heartbeats"):
        rows: list[tuple[Any, ...]] = getattr(batch, field)
        for i, row in enumerate(rows):
            if any(isinstance(v, str) and "\x00" in v for v in row):
                found = True
                rows[i] = tuple(
                    v.replace("\x00", "\ufffd") if isinstance(v, str) else v for v in row
                )
    return found


def _rows_of(batch: Batch) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The batch's rows by named statement, in the order they are written."""
    return [
        (name, rows)
        for name, rows in (
            ("upsert_flow", batch.flows),
            ("upsert_flow_run", batch.flow_runs),
            ("upsert_task_run", batch.task_runs),
            ("insert_log", batch.logs),
            # After the task runs: a cache entry never points at an unrecorded run.
            ("upsert_cache", batch.caches),
            ("update_heartbeats", batch.heartbeats),
        )
        if rows
    ]


def migrate(conn: Any, location: str) -> None:
    """Bring the database to ``SCHEMA_VERSION``: schema.sql's migrations, translated, in one
    transaction with the version; processes starting at once take turns (an advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS millstream_schema (version INTEGER NOT NULL)")
        version = conn.execute(pg_dialect.query(Q["user_version"]), ()).fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"Database {location!r} has schema version {version}, newer than this "
                f"Millstream understands ({SCHEMA_VERSION}); upgrade Millstream"
            )
        if version == SCHEMA_VERSION:
            return
        if (
            version == 0
            and conn.execute(pg_dialect.query(Q["count_schema_objects"]), ()).fetchone()[0]
        ):
            raise StoreError(
                f"Cannot use database {location!r}: it holds tables but is not a Millstream "
                "database"
            )
        conn.execute(pg_dialect.COMPAT_FUNCTIONS)
        for number, text in MIGRATIONS:
            if number > version:
                for statement in statements(text):
                    translated = pg_dialect.ddl(statement)
                    if translated is not None:
                        conn.execute(translated)
        conn.execute("DELETE FROM millstream_schema")
        conn.execute("INSERT INTO millstream_schema (version) VALUES (%s)", (SCHEMA_VERSION,))


def is_url(location: str | None) -> bool:
    """Whether a database setting names a PostgreSQL server rather than a file."""
    return bool(location) and str(location).startswith(("postgresql://", "postgres://"))
