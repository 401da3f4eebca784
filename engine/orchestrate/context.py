"""Context variables only: the current flow run, task run and tags."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Self

from millstream._engine.exceptions import MissingContextError
from millstream._engine.model import states as _states

if TYPE_CHECKING:
    from millstream._engine.model.records import FlowRun, TaskRun
    from millstream._engine.model.spec import FlowSpec, TaskSpec
    from millstream._engine.model.states import State
    from millstream._engine.orchestrate.scheduler import RunGroup
    from millstream._engine.store import Store


class RunContext:
    """Base of the run contexts; ``get()`` returns the current one or None."""

    __slots__ = ()
    _var: ClassVar[ContextVar[Any]]

    @classmethod
    def get(cls) -> Self | None:
        """The current context of this kind, or None outside such a run."""
        ctx: Self | None = cls._var.get()
        return ctx


class FlowRunContext(RunContext):
    """What is known inside a flow run: the flow, its run record, its parameters."""

    __slots__ = (
        "deployment",
        "finished_subflows",
        "flow",
        "flow_run",
        "group",
        "log_prints",
        "loop",
        "parameters",
        "persisted",
        "recovered",
        "settings",
        "spec",
        "store",
        "task_counters",
    )
    _var: ClassVar[ContextVar[FlowRunContext | None]] = ContextVar("flow_run_ctx", default=None)

    def __init__(
        self,
        *,
        spec: FlowSpec,
        flow_run: FlowRun,
        parameters: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        group: RunGroup,
        store: Store,
        deployment: Any = None,
    ) -> None:
        self.spec = spec
        self.flow = spec.owner
        self.flow_run = flow_run
        self.parameters = parameters
        self.loop = loop
        self.group = group
        self.store = store
        self.log_prints = bool(spec.log_prints)
        self.deployment = deployment
        # (task key, call index) -> (recorded result, code fingerprint) of a completed task run,
        # when resuming.
        self.recovered: dict[tuple[str, str], tuple[bytes, str | None]] | None = None
        self.settings: Any = None
        # Call index per task key: (task key, index) identifies a task run inside its flow run,
        # which is what durable recovery matches on.
        # itertools.count: next() is atomic, so threads submitting concurrently get distinct keys.
        self.task_counters: dict[str, itertools.count[int]] = {}
        # (task key, call index) -> final state of a subflow that completed with a persisted
        # result: a retried attempt of this flow run reuses it instead of running it again.
        self.finished_subflows: dict[tuple[str, str], State] = {}
        self.persisted = False  # whether this run's final result was persisted

    @property
    def start_time(self) -> Any:
        """When the flow run started running."""
        return self.flow_run.start_time

    @property
    def persist_result(self) -> bool:
        """Whether the flow run persists its result (its own choice, else the setting)."""
        return _persist_choice(self.spec, self.settings)

    @property
    def result_store(self) -> Any:
        """A ``ResultStore`` with the flow's result storage and serializer."""
        return _result_store(self.spec)

    def next_dynamic_key(self, task_key: str) -> str:
        """The next call index of ``task_key`` in this flow run."""
        counter = self.task_counters.get(task_key)
        if counter is None:
            counter = self.task_counters.setdefault(task_key, itertools.count())
        return str(next(counter))


class TaskRunContext(RunContext):
    """What is known inside a task run: the task, its run record, its parameters."""

    __slots__ = ("log_prints", "parameters", "spec", "task", "task_run")
    _var: ClassVar[ContextVar[TaskRunContext | None]] = ContextVar("task_run_ctx", default=None)

    def __init__(
        self, *, spec: TaskSpec, task_run: TaskRun, parameters: dict[str, Any], log_prints: bool
    ) -> None:
        self.spec = spec
        self.task = spec.owner
        self.task_run = task_run
        self.parameters = parameters
        self.log_prints = log_prints

    @property
    def start_time(self) -> Any:
        """When the task run started running."""
        return self.task_run.start_time

    @property
    def persist_result(self) -> bool:
        """Whether the task run persists its result (its own choice, its flow's, the setting)."""
        flow_ctx = flow_run_var.get()
        spec: Any = self.spec
        if spec.persist_result is None and flow_ctx is not None:
            spec = flow_ctx.spec
        return _persist_choice(spec, flow_ctx.settings if flow_ctx is not None else None)

    @property
    def result_store(self) -> Any:
        """A ``ResultStore`` with the task's (else its flow's) result storage and serializer."""
        flow_ctx = flow_run_var.get()
        store = _result_store(flow_ctx.spec) if flow_ctx is not None else _result_store(None)
        return store.update_for_task(self.spec)


def _persist_choice(spec: Any, settings: Any) -> bool:
    if spec is not None and spec.persist_result is not None:
        return bool(spec.persist_result)
    if settings is None:
        from millstream._engine.settings import get_current_settings

        settings = get_current_settings()
    return bool(settings.results.persist_by_default)


def _result_store(spec: Any) -> Any:
    from millstream._engine.results.result_store import ResultStore

    store = ResultStore()
    return store if spec is None else store.update_for_task(spec)


flow_run_var = FlowRunContext._var
task_run_var = TaskRunContext._var


def in_async_context() -> bool:
    """Whether a sync-compatible call here should return a coroutine (Prefect's rule).

    Inside a task or flow run the run decides: an async body awaits, a sync body blocks, even
    when its thread runs an event loop. Outside runs, a running event loop means async.
    """
    ctx = task_run_var.get() or flow_run_var.get()
    if ctx is not None:
        return bool(ctx.spec.is_async)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


_states.async_context = in_async_context
tags_var: ContextVar[frozenset[str]] = ContextVar("tags", default=frozenset())


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The task run context inside a task, else the flow run context; raises outside runs."""
    task_ctx = task_run_var.get()
    if task_ctx is not None:
        return task_ctx
    flow_ctx = flow_run_var.get()
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContextError(
        "No run context available. You are not in a flow or task run context."
    )


@contextlib.contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add tags to every flow and task run created inside the block (nests additively)."""
    for tag in new_tags:
        if not isinstance(tag, str):
            raise TypeError(f"Tags must be strings, got {tag!r}")
    current = tags_var.get()
    merged = current | frozenset(new_tags)
    token = tags_var.set(merged)
    try:
        yield set(merged)
    finally:
        tags_var.reset(token)
