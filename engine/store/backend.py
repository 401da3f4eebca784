"""The seam a database fills for the store: what the writer and the readers need of it.

``sqlite.SQLiteBackend`` (the default) and ``postgres.PostgresBackend`` (when
``MILLSTREAM_DATABASE_URL`` names a PostgreSQL database) fill it: their own connections, the
named statements in their dialect, the same batch write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Batch:
    """The rows of one write transaction, by named statement, and calls to run after them."""

    __slots__ = ("caches", "calls", "flow_runs", "flows", "heartbeats", "logs", "task_runs")

    def __init__(self) -> None:
        self.flows: list[tuple[Any, ...]] = []
        self.flow_runs: list[tuple[Any, ...]] = []
        self.task_runs: list[tuple[Any, ...]] = []
        self.logs: list[tuple[Any, ...]] = []
        self.caches: list[tuple[Any, ...]] = []
        self.heartbeats: list[tuple[Any, ...]] = []
        self.calls: list[Callable[[Any], Any]] = []


class Backend(Protocol):
    """One database as the store uses it."""

    path: Path
    location: str  # what messages call the database: a file's path, or a URL (password masked)

    def connect_for_writing(self) -> Any:
        """The writer thread's connection, the schema migrated; ``StoreError`` if impossible."""
        ...

    def write_batch(self, conn: Any, batch: Batch) -> list[Any]:
        """Write ``batch`` in one transaction; each call's result (or exception) in order."""
        ...

    async def read(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn`` on a read connection of its own."""
        ...

    def point_read(self, name: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row of a named query, on the calling thread's own read-only connection."""
        ...

    def point_read_all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Every row of a query (a named one, lists expanded), on the calling thread's own
        read-only connection."""
        ...

    def close(self) -> None:
        """Close the connections opened for point reads (the store is closing)."""
        ...
