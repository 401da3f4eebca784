"""Task runners: where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default; ``ConcurrentTaskRunner`` is its older name),
``ProcessPoolTaskRunner`` (bodies in worker processes) and ``DaskTaskRunner`` (bodies on a Dask
cluster; the ``dask`` extra, imported only when used). Give one to ``@flow(task_runner=...)``,
or use it on its own as a context manager::

    with ThreadPoolTaskRunner(max_workers=2) as runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        futures = runner.map(add, {"x": [1, 2, 3], "y": 1})
        future.result(), futures.result()

Submitted on its own (outside a flow) a task run is a top-level task run, recorded like one;
inside a flow run it belongs to that flow run. Leaving the ``with`` block waits for what was
submitted, then stops the runner's workers.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Coroutine, Iterable
from typing import Any

from millstream._engine.bridge.dask_runner import DaskTaskRunner
from millstream._engine.bridge.loops import get_portal
from millstream._engine.bridge.processes import ProcessPoolTaskRunner
from millstream._engine.bridge.task_runners import (
    ConcurrentTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
    set_front,
)
from millstream._engine.model.states import State
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate import task_run as engine_run
from millstream._engine.orchestrate.annotations import (
    BaseAnnotation,
    allow_failure,
    quote,
    unmapped,
)
from millstream._engine.orchestrate.scheduler import EngineFuture, RunGroup
from millstream._mapping import is_mappable, mapped_count
from millstream.futures import PrefectConcurrentFuture, PrefectFuture, PrefectFutureList


class _Started:
    """A runner used on its own: its run group on the engine loop, and its executor."""

    __slots__ = ("executor", "group")

    def __init__(self, group: RunGroup, executor: Any) -> None:
        self.group = group
        self.executor = executor


class _Front:
    """How a runner used on its own submits (installed into the engine's runners below)."""

    def start(self, runner: TaskRunner) -> _Started:
        portal = get_portal()
        executor = runner.acquire()
        return _Started(
            RunGroup(portal.loop, portal.thread_id, executor, runner.max_concurrency()), executor
        )

    def stop(self, runner: TaskRunner, started: Any) -> None:
        group = started.group
        try:
            done: concurrent.futures.Future[None] = get_portal().submit(group._wait_all())
            done.result()
        finally:
            runner.release(started.executor)

    def cancel(self, runner: TaskRunner, started: Any) -> None:
        started.group.cancel_all()

    def submit(
        self,
        runner: TaskRunner,
        task: Any,
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None,
        dependencies: dict[str, Any] | None,
    ) -> PrefectConcurrentFuture[Any]:
        # ``dependencies`` (Prefect's upstream links for its UI graph) is accepted as Prefect
        # passes it; the links Millstream keeps come from the futures among the parameters.
        started: _Started = runner._standalone
        spec = task.spec
        bound = spec.binder.bind((), dict(parameters))
        task_run = engine_run.new_task_run(spec, bound, ctxmod.flow_run_var.get())
        group = started.group
        engine_future = EngineFuture(task_run, group.loop)
        future = PrefectConcurrentFuture.engine_backed(engine_future)
        pool = started.executor
        executor = pool if not spec.is_async or getattr(pool, "remote", False) else None
        waits = list(wait_for) if wait_for else None

        def make() -> Coroutine[Any, Any, State]:
            return engine_run.run_task(
                spec, bound, executor=executor, task_run=task_run, wait_for=waits
            )

        group.submit(engine_future, make, future)
        return future

    def map(
        self, runner: TaskRunner, task: Any, parameters: dict[str, Any], wait_for: Any
    ) -> PrefectFutureList[Any]:
        calls = _map_calls(task, parameters)
        futures: PrefectFutureList[Any] = PrefectFutureList()
        for call in calls:
            futures.append(runner.submit(task, call, wait_for=wait_for))
        return futures


def _map_calls(task: Any, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters of each mapped run, as Prefect's ``TaskRunner.map`` expands them."""
    iterables: dict[str, list[Any]] = {}
    static: dict[str, Any] = {}
    wrapped: dict[str, type[BaseAnnotation[Any]]] = {}
    for key, value in parameters.items():
        if isinstance(value, PrefectFuture):
            value = value.result()  # mapped over its value, as Prefect does
        if isinstance(value, allow_failure | quote):
            wrapped[key] = type(value)
            value = value.value
        if isinstance(value, unmapped):
            static[key] = value.value
        elif is_mappable(value):
            iterables[key] = list(value)
        else:
            static[key] = value
    calls = []
    for i in range(mapped_count(iterables, parameters)):
        call = {key: values[i] for key, values in iterables.items()}
        call.update(static)
        for key, annotation in wrapped.items():
            call[key] = annotation(call[key])
        calls.append(call)
    return calls


set_front(_Front())

__all__ = [
    "ConcurrentTaskRunner",
    "DaskTaskRunner",
    "ProcessPoolTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
]
