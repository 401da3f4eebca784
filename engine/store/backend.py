"""The seam a database fills for the store: what the writer and the readers need of it.

``sqlite.SQLiteBackend`` (the default) and ``postgres.PostgresBackend`` (when
``MILLSTREAM_DATABASE_URL`` names a PostgreSQL database) fill it: their own connections, the
named statements in their dialect, the same batch write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")

# How the writer treats a failed batch (``Backend.classify``): "transient" is retried with
# backoff (a lock held past the busy timeout, an I/O error, a full disk); "data" means a row
# that cannot be bound, isolated row by row; "corrupt" is a damaged file, never retried.
ErrorKind = Literal["transient", "data", "corrupt"]


class Batch:
    """The rows of one write transaction, by named statement, and calls to run after them."""

    __slots__ = (
        "caches",
        "calls",
        "fenced",
        "fences",
        "flow_run_fences",
        "flow_runs",
        "flows",
        "heartbeat_fences",
        "heartbeats",
        "logs",
        "task_run_fences",
        "task_runs",
    )

    def __init__(self) -> None:
        self.flows: list[tuple[Any, ...]] = []
        self.flow_runs: list[tuple[Any, ...]] = []
        self.task_runs: list[tuple[Any, ...]] = []
        self.logs: list[tuple[Any, ...]] = []
        self.caches: list[tuple[Any, ...]] = []
        self.heartbeats: list[tuple[Any, ...]] = []
        self.calls: list[Callable[[Any], Any]] = []
        # Fencing: the lease epoch this process holds, by root flow run id, and for each row of
        # flow_runs / task_runs / heartbeats the root id it belongs to (None: not fenced).
        # write_batch drops the rows of roots claimed since by another owner into ``fenced``.
        self.fences: dict[bytes, int] = {}
        self.flow_run_fences: list[bytes | None] = []
        self.task_run_fences: list[bytes | None] = []
        self.heartbeat_fences: list[bytes | None] = []
        self.fenced: set[bytes] = set()


class Backend(Protocol):
    """One database as the store uses it."""

    path: Path
    location: str  # what messages call the database: a file's path, or a URL (password masked)

    def connect_for_writing(self) -> Any:
        """The writer thread's connection, the schema migrated; ``StoreError`` if impossible."""
        ...

    def write_batch(self, conn: Any, batch: Batch) -> list[Any]:
        """Write ``batch`` in one transaction; each call's result (or exception) in order.
        Rows of fenced runs (``batch.fences``) whose stored epoch is newer are left out and
        their root ids put in ``batch.fenced``. On failure nothing of the batch is written."""
        ...

    def classify(self, exc: BaseException) -> ErrorKind:
        """How the writer should treat ``exc``, raised by ``write_batch``."""
        ...

    def describe(self, exc: BaseException) -> str:
        """``exc`` as one line for a user: the cause, the database, and what to do."""
        ...

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection of its own."""
        ...

    async def read_only(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``read`` when this process cannot write the database (``ReadOnlyDatabase`` from
        ``connect_for_writing``): reads still work."""
        ...

    def point_read(self, name: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a named query, on the calling thread's own read-only connection."""
        ...

    def transact(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one write transaction on the calling thread's own connection,
        committed before it returns (flow control: slots must be visible to every process at
        once, so they do not go through the write-behind queue)."""
        ...

    def execute_once(self, name: str, params: tuple[Any, ...]) -> int | None:
        """One named write statement as a transaction of its own (atomic as one statement):
        its row count, or None when it could not start at once (use ``transact`` then)."""
        ...

    def point_read_all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a query (a named one, lists expanded), on the calling thread's own
        read-only connection."""
        ...

    def close(self) -> None:
        """Close the connections opened for point reads (the store is closing)."""
        ...
