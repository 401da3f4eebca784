"""The seam a database fills for the store: what the writer and the readers need of it.

``sqlite.SQLiteBackend`` is the one implementation; a PostgreSQL backend would fill the same
Protocol (its own connections, the named statements in its dialect, the same batch write).
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
