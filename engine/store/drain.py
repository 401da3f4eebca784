"""The writer thread: drain the queue in batched transactions, and what it does when a batch
fails.

A batch that fails for a transient reason (``Backend.classify``) is retried with backoff for
``WriterOptions.retry_seconds``; if it still fails, the flushes and calls of that batch fail
naming the database and the cause, and its rows are kept for the next attempt. A row that
cannot be bound is isolated by halving the batch (the rest is written). A bug here is logged,
never fatal: a dead writer would hang every later flow of the process.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from millstream._engine.exceptions import StoreError
from millstream._engine.store import encoding
from millstream._engine.store.writer import (
    GROUP_COMMIT_DELAY,
    CallWrite,
    FlushMarker,
    Item,
    WriteQueue,
    build_batch,
    fail_pending,
    settle,
)

if TYPE_CHECKING:
    from millstream._engine.store.backend import Backend, Batch

logger = logging.getLogger("millstream.store")


class WriterOptions:
    """How the writer retries, and whom it tells of fenced runs."""

    __slots__ = ("on_fenced", "retry_seconds")

    def __init__(
        self,
        retry_seconds: float = 60.0,
        on_fenced: Callable[[set[bytes]], None] | None = None,
    ) -> None:
        self.retry_seconds = retry_seconds
        self.on_fenced = on_fenced


def run_writer(
    queue: WriteQueue,
    backend: Backend,
    opened: concurrent.futures.Future[None],
    closing: Callable[[], bool],
    options: WriterOptions | None = None,
) -> None:
    """The writer thread's body: open the database, then drain the queue until closed.

    A batch that fails for a transient reason is retried with backoff for
    ``options.retry_seconds``; if it still fails, the flushes and calls waiting on it fail
    (naming the database and the cause) and its rows are kept and tried again with the next
    batch, so what was queued reaches the disk once it can.
    """
    options = options or WriterOptions()
    try:
        conn = backend.connect_for_writing()
    except BaseException as exc:
        settle(opened, exc)
        queue.release_all()
        fail_pending(queue, exc)
        return
    settle(opened, None)
    carried: list[Item] = []
    try:
        while True:
            # Rows kept from a failed batch are tried again after a pause even if nothing new
            # is queued.
            queue.wake.wait(_CARRY_PAUSE if carried else None)
            if not queue.urgent.is_set() and not closing():
                # Group commit: plain writes wait a moment for company; a flush does not.
                queue.urgent.wait(GROUP_COMMIT_DELAY)
            queue.wake.clear()
            queue.urgent.clear()
            queue.wake_pending = False
            # Raised before the first item leaves the queue, lowered once all are committed: a
            # read that finds the queue empty still waits for that batch (read-your-writes).
            queue.writing = True
            try:
                while queue.items or carried:
                    carried = _guarded_write(queue, backend, conn, carried, closing, options)
                    if carried and not queue.items:
                        break
            finally:
                queue.carried = len(carried)
                queue.writing = False
            if closing():
                return
    finally:
        queue.release_all()
        conn.close()


# Seconds between attempts at rows kept from a failed batch when nothing new is queued.
_CARRY_PAUSE = 1.0


def _guarded_write(
    queue: WriteQueue,
    backend: Backend,
    conn: Any,
    carried: list[Item],
    closing: Callable[[], bool],
    options: WriterOptions,
) -> list[Item]:
    try:
        return write_once(queue, backend, conn, carried, closing, options)
    except Exception:  # a bug here must not kill the writer: every later flow would hang
        logger.exception("The store's writer failed on a batch for %s", backend.location)
        return []


def write_once(
    queue: WriteQueue,
    backend: Backend,
    conn: Any,
    carried: list[Item] | None = None,
    closing: Callable[[], bool] = lambda: False,
    options: WriterOptions | None = None,
) -> list[Item]:
    """Take one batch off the queue (after any rows kept from a failed one), write it in one
    transaction, and tell whoever waits; returns the rows to keep for the next attempt."""
    options = options or WriterOptions()
    items = [*carried, *queue.take_batch()] if carried else queue.take_batch()
    batch, calls, flushes, dropped = build_batch(items)
    error: BaseException | None = None
    results: list[Any] = []
    keep: list[Item] = []
    fenced: set[bytes] = set()
    try:
        results = _write_retrying(backend, conn, batch, closing, options.retry_seconds)
        fenced = batch.fenced
    except Exception as exc:
        if backend.classify(exc) == "data":
            # A row that cannot be bound (made elsewhere, unchecked): isolate it, write the rest.
            data: list[Item] = [i for i in items if not isinstance(i, CallWrite | FlushMarker)]
            dropped += _isolate(backend, conn, data, fenced)
            calls_batch, _, _, _ = build_batch(calls)
            try:
                results = _write_retrying(
                    backend, conn, calls_batch, closing, options.retry_seconds
                )
            except Exception as exc2:
                error = exc2
        else:
            error = exc
            keep = [i for i in items if not isinstance(i, CallWrite | FlushMarker)]
    if fenced and options.on_fenced is not None:
        options.on_fenced(fenced)
    failure = _failure(backend, error, dropped)
    for call, res in zip(calls, results or [None] * len(calls), strict=False):
        if error is not None:
            settle(call.future, failure)
        elif isinstance(res, BaseException):
            settle(call.future, res)
        else:
            settle(call.future, None, res)
    for marker in flushes:
        settle(marker.future, failure)
    return keep


def _failure(
    backend: Backend, error: BaseException | None, dropped: list[BaseException]
) -> StoreError | None:
    from millstream._engine.exceptions import CorruptDatabase

    if error is not None:
        cls = CorruptDatabase if backend.classify(error) == "corrupt" else StoreError
        failure = cls(f"Writing to {backend.location} failed: {backend.describe(error)}")
        failure.__cause__ = error
        return failure
    if dropped:
        for exc in dropped:
            logger.error("A row for %s could not be stored: %r", backend.location, exc)
        return StoreError(
            f"Writing to {backend.location} failed: {len(dropped)} row(s) could not be stored "
            f"({type(dropped[0]).__name__}: {dropped[0]})"
        )
    return None


def _write_retrying(
    backend: Backend, conn: Any, batch: Batch, closing: Callable[[], bool], retry_seconds: float
) -> list[Any]:
    """``backend.write_batch``, retried with backoff while it fails for a transient reason."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.02
    first = True
    while True:
        try:
            return backend.write_batch(conn, batch)
        except Exception as exc:
            if backend.classify(exc) != "transient" or closing():
                raise
            if time.monotonic() + delay > deadline:
                raise
            if first:
                first = False
                logger.warning(
                    "Writing to %s failed (%s); retrying for up to %g s",
                    backend.location,
                    backend.describe(exc),
                    retry_seconds,
                )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _isolate(
    backend: Backend, conn: Any, items: list[Item], fenced: set[bytes]
) -> list[BaseException]:
    """Write ``items`` in halves until each row that cannot be bound is alone; returns the
    errors of the rows left out (text is made valid UTF-8 first)."""
    if not items:
        return []
    batch, _, _, dropped = build_batch(items)
    _sanitize(batch)
    try:
        backend.write_batch(conn, batch)
        fenced |= batch.fenced
        return dropped
    except Exception as exc:
        if backend.classify(exc) != "data":
            raise
        if len(items) == 1:
            return [*dropped, exc]
    mid = len(items) // 2
    return _isolate(backend, conn, items[:mid], fenced) + _isolate(
        backend, conn, items[mid:], fenced
    )


def _sanitize(batch: Batch) -> None:
    batch.flows = [encoding.sanitize_row(r) for r in batch.flows]
    batch.flow_runs = [encoding.sanitize_row(r) for r in batch.flow_runs]
    batch.task_runs = [encoding.sanitize_row(r) for r in batch.task_runs]
    batch.logs = [encoding.sanitize_row(r) for r in batch.logs]
    batch.caches = [encoding.sanitize_row(r) for r in batch.caches]
