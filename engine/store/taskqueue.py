"""The background task queue's typed operations (``Task.delay`` and task workers).

Like the limit tables, written in synchronous transactions on the calling thread: a queued
run must be visible to every worker, and a claim must be exclusive, the moment the call
returns.
"""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine.store.backend import Backend
from millstream._engine.store.limits import now_us
from millstream._engine.store.migrations import Q, expand


class TaskQueueOperations:
    """Mixed into ``Store`` (``self.backend``)."""

    backend: Backend

    def enqueue_task(
        self,
        task_run_id: uuid.UUID,
        task_name: str,
        parameters: bytes,
        priority: int,
        idempotency_key: str | None,
    ) -> uuid.UUID:
        """Queue a run; with an ``idempotency_key`` already queued, the id of that run."""
        stamp = now_us()
        row = (task_run_id.bytes, task_name, parameters, priority, idempotency_key, stamp, stamp)

        def enqueue(conn: Any) -> bytes:
            if conn.execute(Q["insert_queued_task"], row).rowcount:
                return task_run_id.bytes
            found = conn.execute(Q["select_queued_task_by_key"], (idempotency_key,)).fetchone()
            if found is None:  # the id itself was taken: a caller reusing a run id
                raise ValueError(f"Task run {task_run_id} is queued already")
            existing: bytes = found[0]
            return existing

        return uuid.UUID(bytes=self.backend.transact(enqueue))

    def claim_queued_task(
        self, task_names: list[str], owner: str, lease_seconds: float
    ) -> tuple[uuid.UUID, str, bytes, int] | None:
        """Take the next run of these tasks for ``owner``: ``(id, task name, parameters,
        attempt number)``, or None."""
        now = now_us()
        params = (owner, now + int(lease_seconds * 1e6), now, *task_names, now, now)
        sql = expand("claim_queued_task", len(task_names))

        def claim(conn: Any) -> tuple[Any, ...] | None:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

        row = self.backend.transact(claim)
        if row is None:
            return None
        return uuid.UUID(bytes=row[0]), row[1], row[2], int(row[3])

    def renew_queued_tasks(self, ids: list[uuid.UUID], owner: str, lease_seconds: float) -> None:
        """Push the leases of runs this owner is running."""
        expires = now_us() + int(lease_seconds * 1e6)

        def renew(conn: Any) -> None:
            for run_id in ids:
                conn.execute(Q["renew_queued_task"], (expires, run_id.bytes, owner))

        self.backend.transact(renew)

    def finish_queued_task(
        self, task_run_id: uuid.UUID, owner: str, status: str, outcome: bytes | None
    ) -> bool:
        """Record a run's end; False when this owner no longer holds it (its lease lapsed
        and another worker took it)."""
        params = (status, outcome, now_us(), task_run_id.bytes, owner)

        def finish(conn: Any) -> int:
            return int(conn.execute(Q["finish_queued_task"], params).rowcount)

        return bool(self.backend.transact(finish))

    def read_queued_task(self, task_run_id: uuid.UUID) -> tuple[str, bytes | None, str, int] | None:
        """``(status, outcome, task name, attempts)`` of a queued run, or None."""
        row = self.backend.point_read("select_queued_task", (task_run_id.bytes,))
        if row is None:
            return None
        return row[0], row[1], row[2], int(row[3])
