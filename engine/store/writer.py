"""The write-behind queue, its typed items, and the one writer thread that drains it.

Items are small ``__slots__`` classes dispatched by type. The queue is bounded: a producer
that finds it full waits until the writer takes a batch off it (see ``WriteQueue.put``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from millstream._engine.model.records import FlowRecord, FlowRun, TaskRun
from millstream._engine.model.states import State
from millstream._engine.store import rows

if TYPE_CHECKING:
    from millstream._engine.store.backend import Batch

logger = logging.getLogger("millstream.store")

# How long queued writes may wait for company before the writer commits them (seconds).
GROUP_COMMIT_DELAY = 0.01
MAX_BATCH = 5_000
# A producer on an event loop thread waits at most this long for room (about one batch's
# time), then queues anyway: a stalled writer (a lock held by another process) must not freeze
# the loop, and the overshoot is one producer's item per wait.
LOOP_WAIT_SECONDS = 0.5
# Below the bound by this many items, producers append without the lock (see WriteQueue.put).
_SLACK = 8


class RunStateWrite:
    """A run in a new state. ``run`` is a snapshot taken when the write is queued (a shallow
    copy: ~0.1 us), so later changes to the live record do not leak into this row. ``fence``
    is the root flow run's id and the lease epoch this process holds for it (None: unfenced)."""

    __slots__ = ("fence", "is_task", "result", "run", "state")

    def __init__(
        self,
        run: FlowRun | TaskRun,
        state: State,
        result: bytes | None,
        is_task: bool,
        fence: tuple[bytes, int] | None = None,
    ) -> None:
        self.run = run
        self.state = state
        self.result = result
        self.is_task = is_task
        self.fence = fence


class LogWrite:
    """Log lines handed over together, already as ``insert_log`` rows (they never change)."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows


class FlowWrite:
    """A flow seen for the first time."""

    __slots__ = ("record",)

    def __init__(self, record: FlowRecord) -> None:
        self.record = record


class CacheWrite:
    """A cache entry."""

    __slots__ = ("blob", "expiration", "key", "task_run_id")

    def __init__(
        self, key: str, blob: bytes, expiration: dt.datetime | None, task_run_id: uuid.UUID
    ) -> None:
        self.key = key
        self.blob = blob
        self.expiration = expiration
        self.task_run_id = task_run_id


class HeartbeatWrite:
    """A heartbeat stamp for live flow runs (each with its fence, as ``RunStateWrite``)."""

    __slots__ = ("fences", "run_ids", "stamp")

    def __init__(
        self,
        run_ids: list[uuid.UUID],
        stamp: dt.datetime,
        fences: list[tuple[bytes, int] | None] | None = None,
    ) -> None:
        self.run_ids = run_ids
        self.stamp = stamp
        self.fences = fences or [None] * len(run_ids)


class CallWrite:
    """``fn(conn)`` run inside the writer's transaction; its result goes to ``future``."""

    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future[Any] = concurrent.futures.Future()


class FlushMarker:
    """Resolved once everything queued before it is committed."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()


Item = RunStateWrite | LogWrite | FlowWrite | CacheWrite | HeartbeatWrite | CallWrite | FlushMarker


def settle(
    fut: concurrent.futures.Future[Any], error: BaseException | None, value: Any = None
) -> None:
    """Resolve ``fut`` unless its waiter gave up (cancelled it): the writer must go on."""
    if fut.done():
        return
    try:
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


class WriteQueue:
    """A bounded queue of items from any thread, drained by one writer thread.

    ``put`` appends without a lock while there is plenty of room (a deque append is atomic);
    near the bound a producer takes the condition's lock, and if the queue is full waits for
    the writer to take a batch. The writer notifies after every batch it takes, under the same
    lock, so a producer that saw a full queue cannot miss the wake-up.

    A producer on an event loop thread waits at most ``LOOP_WAIT_SECONDS`` (about one batch's
    time) and then queues anyway, so a writer stalled by another process's lock slows the loop
    but never freezes it; any other thread waits as long as it takes.
    """

    def __init__(self, max_items: int) -> None:
        self.items: collections.deque[Item] = collections.deque()
        # At least a little over the lock-free slack, so a tiny bound still queues.
        self.max_items = max(max_items, 2 * _SLACK)
        self.room = threading.Condition(threading.Lock())
        self.wake = threading.Event()
        self.urgent = threading.Event()
        self.wake_pending = False
        # Set by the store when the writer is gone (never opened, or closed): nobody will
        # make room any more, so producers stop waiting.
        self.dead = False
        self.writer_thread: threading.Thread | None = None
        # True while the writer holds a batch taken off the queue and not yet committed.
        self.writing = False
        # Rows the writer keeps from a batch that failed, to try again (they are not on disk).
        self.carried = 0
        # The largest length seen by a producer (for tests and the benchmark).
        self.high_water = 0

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item: Item, urgent: bool = False) -> None:
        """Queue ``item``; waits for room first when the queue is (nearly) full."""
        items = self.items
        n = len(items)
        if n < self.max_items - _SLACK:
            # Lock-free: only another producer switched in between this check and the append
            # can add to the queue meanwhile, and _SLACK of them at once never happens.
            items.append(item)
        else:
            with self.room:  # near the bound: check and append under the lock
                if not self._has_room():
                    self._wait_for_room()
                n = len(items)
                items.append(item)
        if n >= self.high_water:
            self.high_water = n + 1
        if urgent:
            self.urgent.set()
            self.wake.set()
        elif not self.wake_pending:
            self.wake_pending = True
            self.wake.set()

    def _wait_for_room(self) -> None:
        # Called holding self.room.
        if threading.current_thread() is self.writer_thread:
            return  # the writer itself queueing (a call's side effect) must never wait
        self.urgent.set()  # the writer should not linger for company: there is plenty
        self.wake.set()
        if asyncio._get_running_loop() is not None:
            self.room.wait_for(self._has_room, LOOP_WAIT_SECONDS)
        else:
            self.room.wait_for(self._has_room)

    def _has_room(self) -> bool:
        return self.dead or len(self.items) < self.max_items

    def take_batch(self) -> list[Item]:
        """Up to ``MAX_BATCH`` items off the front (on the writer thread); wakes producers."""
        items = self.items
        batch = [items.popleft() for _ in range(min(len(items), MAX_BATCH))]
        with self.room:
            self.room.notify_all()
        return batch

    def release_all(self) -> None:
        """The writer is gone: wake every waiting producer for good."""
        self.dead = True
        with self.room:
            self.room.notify_all()


def build_batch(
    items: Iterable[Item],
) -> tuple[Batch, list[CallWrite], list[FlushMarker], list[BaseException]]:
    """Rows for one transaction: runs coalesced (one row write per run, carrying every state
    it went through), then flows, logs, cache entries and heartbeats; calls and flushes apart.
    An item whose row cannot be made is left out, its error returned (the writer survives any
    payload; rows are checked where they are made, so this is the last line of defence)."""
    from millstream._engine.store.backend import Batch

    runs: dict[uuid.UUID, list[Any]] = {}
    batch = Batch()
    calls: list[CallWrite] = []
    flushes: list[FlushMarker] = []
    errors: list[BaseException] = []
    history_entry = rows.history_entry
    for item in items:
        try:  # free in CPython 3.11 unless it raises
            # Most frequent first, inline; isinstance both dispatches and narrows the type.
            if isinstance(item, RunStateWrite):
                run_id = item.run.id
                entry = runs.get(run_id)
                line = history_entry(
                    item.state, run_id, "task_run_id" if item.is_task else "flow_run_id"
                )
                if entry is None:
                    runs[run_id] = [item, [line], item.result]
                else:
                    entry[0] = item
                    entry[1].append(line)
                    if item.result is not None:
                        entry[2] = item.result
            else:
                _add_item(item, batch, calls, flushes)
        except Exception as exc:
            errors.append(exc)
    fences = batch.fences
    for last, lines, result in runs.values():
        try:
            history = rows.encode_history(lines)
            fence = last.fence
            root = None
            if fence is not None:
                root = fence[0]
                held = fences.get(root)
                if held is None or fence[1] < held:
                    fences[root] = fence[1]  # the oldest epoch among the rows decides
            if last.is_task:
                batch.task_runs.append(rows.task_run_row(last.run, last.state, history, result))
                batch.task_run_fences.append(root)
            else:
                batch.flow_runs.append(rows.flow_run_row(last.run, last.state, history, result))
                batch.flow_run_fences.append(root)
        except Exception as exc:
            errors.append(exc)
    batch.calls = [c.fn for c in calls]
    return batch, calls, flushes, errors


def _fence(batch: Batch, fence: tuple[bytes, int] | None) -> bytes | None:
    if fence is None:
        return None
    root, epoch = fence
    held = batch.fences.get(root)
    if held is None or epoch < held:
        batch.fences[root] = epoch  # the oldest epoch among the rows decides: stale is stale
    return root


def _add_item(item: Item, batch: Batch, calls: list[CallWrite], flushes: list[FlushMarker]) -> None:
    if isinstance(item, LogWrite):
        batch.logs.extend(item.rows)
    elif isinstance(item, FlowWrite):
        batch.flows.append(rows.flow_row(item.record))
    elif isinstance(item, CacheWrite):
        batch.caches.append(
            (
                item.key,
                item.blob,
                rows.ts(item.expiration),
                item.task_run_id.bytes,
                rows.ts(dt.datetime.now(dt.UTC)),
            )
        )
    elif isinstance(item, HeartbeatWrite):
        stamp = rows.ts(item.stamp)
        batch.heartbeats.extend((stamp, i.bytes) for i in item.run_ids)
        batch.heartbeat_fences.extend(_fence(batch, f) for f in item.fences)
    elif isinstance(item, FlushMarker):
        flushes.append(item)
    else:
        assert isinstance(item, CallWrite)
        calls.append(item)


def fail_pending(queue: WriteQueue, exc: BaseException) -> None:
    """The database never opened: fail every flush and call so no caller waits forever."""
    while queue.items:
        item = queue.items.popleft()
        if isinstance(item, FlushMarker | CallWrite):
            settle(item.future, exc)
