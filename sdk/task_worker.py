"""Background tasks: ``Task.delay(...)`` queues a task run in the database and a task worker
(``serve(*tasks)``, or ``millstream task-worker path.py:task``) runs it, once.

A queued run is claimed by one worker under a lease that the worker renews while the run goes
on; if the worker dies, the lease lapses and another worker takes the run (its attempt count
goes up). Retries are the task's own (``retries=``), inside one claim. The outcome is recorded
with a write fenced by the claim, so a run finishes once; ``future.result()`` reads it from any
process (woken at once in the worker's own process, else within ``limits.poll_seconds``).

Millstream extensions, with Prefect-style names, on ``Task.apply_async``: ``priority`` (higher
runs first; default 0) and ``idempotency_key`` (a second call with the same key returns the
future of the first run instead of queuing another).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, TypeVar

from millstream._engine.bridge.executors import Executor
from millstream._engine.exceptions import NotSupportedError, ObjectNotFound
from millstream._engine.limits.waiters import notifier_for
from millstream._engine.model.states import State, StateType, state_result
from millstream._engine.orchestrate import task_run as engine_run
from millstream._engine.results.faithful import MsgpackSerializer
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store
from millstream._sync import run_sync
from millstream.futures import PrefectDistributedFuture

R = TypeVar("R")

_serializer = MsgpackSerializer(pickle_fallback=True)
_FINAL = ("COMPLETED", "FAILED")


def _store() -> Store:
    store = get_store(get_current_settings().database_path)
    store.ensure_open_sync()
    return store


def _queue_notifier(store: Store) -> Any:
    # Its own notifier (not the limits'): a finished run wakes the futures of this process.
    return notifier_for(store.path.with_name(store.path.name + "#task-queue"))


class QueuedTaskRunFuture(PrefectDistributedFuture[R]):
    """The future of a run queued with ``Task.delay`` (a ``PrefectDistributedFuture``, as
    Prefect's ``delay`` returns): its state is read from the queue, and ``wait`` wakes at once
    when a task worker of this process finishes it (elsewhere, within the poll interval)."""

    def _read(self) -> State | None:
        found = _store().read_queued_task(self.task_run_id)
        if found is None:
            raise ObjectNotFound(f"Queued task run {self.task_run_id} not found")
        status, outcome, _, _ = found
        if status not in _FINAL:
            kind = StateType.RUNNING if status == "RUNNING" else StateType.SCHEDULED
            return State(type=kind, name=kind.value.title())
        value = _serializer.loads(outcome) if outcome is not None else None
        if status == "COMPLETED":
            return State(type=StateType.COMPLETED, name="Completed", data=value)
        return State(type=StateType.FAILED, name="Failed", message=str(value), data=value)

    def done(self) -> bool:
        """Whether the run has finished."""
        return self.state.is_final()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run finishes or ``timeout`` seconds pass."""
        notifier = _queue_notifier(_store())
        poll = get_current_settings().limits.poll_seconds
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            generation = notifier.generation()
            if self.done():
                return
            wait = poll if deadline is None else min(poll, deadline - time.monotonic())
            if wait <= 0:
                return
            notifier.wait(generation, wait)

    async def wait_async(self, timeout: float | None = None) -> None:
        """``wait`` without blocking the running loop."""
        await asyncio.to_thread(self.wait, timeout)

    async def result_async(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        """``result`` without blocking the running loop."""
        return await asyncio.to_thread(self.result, timeout, raise_on_failure)

    def __repr__(self) -> str:
        return f"PrefectDistributedFuture(task_run_id={self.task_run_id})"


def enqueue(
    task: Any,
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    *,
    wait_for: Iterable[Any] | None = None,
    dependencies: Any = None,
    priority: int = 0,
    idempotency_key: str | None = None,
) -> QueuedTaskRunFuture[Any]:
    """Queue a run of ``task`` for a task worker (``Task.delay``/``Task.apply_async``)."""
    if wait_for or dependencies:
        raise NotSupportedError(
            "apply_async(wait_for=..., dependencies=...): a queued run waits for nothing; "
            "wait for the futures first, then call delay() with their results"
        )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {priority!r}")
    spec = task.spec
    parameters = spec.binder.bind(tuple(args or ()), dict(kwargs or {}))
    try:
        blob = _serializer.dumps(parameters)
    except Exception as exc:
        raise TypeError(
            f"Cannot queue {task.name!r}: its parameters cannot be encoded ({exc})"
        ) from exc
    store = _store()
    run_id = store.enqueue_task(uuid.uuid4(), spec.name, blob, priority, idempotency_key)
    _queue_notifier(store).notify()
    return QueuedTaskRunFuture(run_id)


class TaskWorker:
    """Runs queued runs of ``tasks``, at most ``limit`` at once, until stopped."""

    def __init__(self, *tasks: Any, limit: int | None = 10) -> None:
        if not tasks:
            raise ValueError("A task worker needs at least one task to serve")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.tasks = {t.name: t for t in tasks}
        self.limit = limit or 64
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        settings = get_current_settings()
        self.lease_seconds = settings.serve.lease_seconds
        self.poll = settings.limits.poll_seconds
        self.store = _store()
        self.stopping = threading.Event()
        self.running: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self.executed = 0

    def run(self, timeout: float | None = None) -> None:
        """Serve until ``stop()`` (or ``timeout`` seconds)."""
        threads = [
            threading.Thread(target=self._loop, name=f"millstream-task-worker-{i}", daemon=True)
            for i in range(self.limit)
        ]
        renewer = threading.Thread(target=self._renew, name="millstream-task-leases", daemon=True)
        for thread in [*threads, renewer]:
            thread.start()
        try:
            self.stopping.wait(timeout)
        finally:
            self.stopping.set()
            _queue_notifier(self.store).notify()
            for thread in threads:
                thread.join()

    def stop(self) -> None:
        """Stop claiming; runs in progress finish first."""
        self.stopping.set()
        _queue_notifier(self.store).notify()

    def _loop(self) -> None:
        notifier = _queue_notifier(self.store)
        names = list(self.tasks)
        while not self.stopping.is_set():
            generation = notifier.generation()
            claimed = self.store.claim_queued_task(names, self.owner, self.lease_seconds)
            if claimed is None:
                notifier.wait(generation, self.poll)
                continue
            self._execute(*claimed)

    def _execute(self, run_id: uuid.UUID, name: str, blob: bytes, attempt: int) -> None:
        with self._lock:
            self.running.add(run_id)
        try:
            task = self.tasks[name]
            parameters = _serializer.loads(blob)
            state = _run(task, run_id, parameters)
            ok = state.type is StateType.COMPLETED
            value = state_result(state, raise_on_failure=False)
            try:
                outcome = _serializer.dumps(value)
            except Exception as exc:
                ok, outcome = False, _serializer.dumps(RuntimeError(f"result not encodable: {exc}"))
            self.store.finish_queued_task(
                run_id, self.owner, "COMPLETED" if ok else "FAILED", outcome
            )
        finally:
            with self._lock:
                self.running.discard(run_id)
                self.executed += 1
            _queue_notifier(self.store).notify()

    def _renew(self) -> None:
        while not self.stopping.wait(self.lease_seconds / 3):
            with self._lock:
                running = list(self.running)
            if running:
                try:
                    self.store.renew_queued_tasks(running, self.owner, self.lease_seconds)
                except Exception:  # a locked file: the next round renews them
                    continue


def _run(task: Any, run_id: uuid.UUID, parameters: dict[str, Any]) -> State:
    spec = task.spec
    task_run = engine_run.new_task_run(spec, parameters, None, task_run_id=run_id)

    def make(caller: Executor) -> Any:
        return engine_run.run_task(spec, parameters, executor=caller, task_run=task_run)

    if spec.is_async:
        state: State = asyncio.run(
            engine_run.run_task(spec, parameters, executor=None, task_run=task_run)
        )
        return state
    result: State = run_sync(make)
    return result


def serve(
    *tasks: Any,
    limit: int | None = 10,
    status_server_port: int | None = None,
    timeout: float | None = None,
) -> None:
    """Run queued runs of ``tasks`` (at most ``limit`` at once) until interrupted or
    ``timeout`` seconds; runs in progress finish before it returns."""
    if status_server_port is not None:
        raise NotSupportedError(
            "serve(status_server_port=...): the task worker's status is in the database; "
            "read it with millstream.get_client() or the dashboard"
        )
    worker = TaskWorker(*tasks, limit=limit)
    try:
        worker.run(timeout)
    except KeyboardInterrupt:
        worker.stop()


async def aserve(
    *tasks: Any,
    limit: int | None = 10,
    status_server_port: int | None = None,
    timeout: float | None = None,
) -> None:
    """``serve`` from async code (the worker's threads run off the loop)."""
    await asyncio.to_thread(
        serve, *tasks, limit=limit, status_server_port=status_server_port, timeout=timeout
    )


__all__ = [
    "PrefectDistributedFuture",
    "QueuedTaskRunFuture",
    "TaskWorker",
    "aserve",
    "enqueue",
    "serve",
]
