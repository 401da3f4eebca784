"""Where a run's lines go: log destinations computed once per run, and the queued line's shape."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, TypeAlias

from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store

ROOT = "millstream"
FLOW_RUNS = "millstream.flow_runs"
TASK_RUNS = "millstream.task_runs"
# The logger name of the row that says how many lines of a run were dropped (see _Cap).
CAP_LOGGER = "millstream.logs"
CAP_SETTING = "MILLSTREAM_LOGGING_MAX_LINES_PER_RUN"

# Bounds on per-run bookkeeping, for runs whose end is never announced (see run_finished).
_MAX_TARGETS = 1_024

# Looked up once: logging.getLogger takes the logging module's lock on every call.
_task_runs_logger = logging.getLogger(TASK_RUNS)
_flow_runs_logger = logging.getLogger(FLOW_RUNS)

_disabled: ContextVar[bool] = ContextVar("run_logger_disabled", default=False)
_task_var = ctxmod.task_run_var
_flow_var = ctxmod.flow_run_var

# A queued line: target run (None: not in a run), level, logger name, message, creation time,
# exception text, extra fields, and where it goes: _SHOW (the console), _KEEP (the run's rows).
Entry: TypeAlias = tuple[
    "_Target | None", int, str, str, float, "str | None", "dict[str, Any] | None", int
]
_SHOW, _KEEP = 1, 2


# -- where a run's lines go ---------------------------------------------------------------------
class _Target:
    """A run's log destination and labels, computed once per run (not once per line).

    Built on the caller's thread for every task run's final line, so it does the least there:
    the label and the fields are made on first use (on the log thread for the label).
    """

    __slots__ = (
        "_fields",
        "_flow_run",
        "_label",
        "_task_run",
        "flow_run_id",
        "key",
        "limit",
        "logger",
        "store",
        "task_run_id",
    )

    # Set on targets of a task body running in a worker process: its lines are kept there, to
    # be shipped back with the body's outcome (``RemoteTarget``).
    collect: list[tuple[Any, ...]] | None = None

    def __init__(
        self,
        flow_run: FlowRun | None,
        task_run: TaskRun | None,
        flow_run_id: uuid.UUID | None,
        logger: logging.Logger,
        store: Store,
        limit: int,
    ) -> None:
        self._fields: dict[str, Any] | None = None
        self._label: str | None = None
        self._flow_run = flow_run
        self._task_run = task_run
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run.id if task_run is not None else None
        # Lines are capped per flow run (a task's lines count towards its flow run's); a task
        # run outside any flow is a run of its own.
        key = flow_run_id if flow_run_id is not None else self.task_run_id
        assert key is not None
        self.key: uuid.UUID = key
        self.logger = logger
        self.store = store
        self.limit = limit

    @property
    def label(self) -> str:
        """How console lines name the run: ``Task run 'name'`` or ``Flow run 'name'``."""
        label = self._label
        if label is None:
            task_run, flow_run = self._task_run, self._flow_run
            if task_run is not None:
                label = f"Task run {task_run.name!r}"
            else:
                assert flow_run is not None
                label = f"Flow run {flow_run.name!r}"
            self._label = label
        return label

    @property
    def fields(self) -> dict[str, Any]:
        """The run's fields on each line (built when first needed: the engine's one line per
        task run is often the only one, rendered without them)."""
        fields = self._fields
        if fields is None:
            flow_run, task_run = self._flow_run, self._task_run
            flow_run_id = self.flow_run_id
            fields = {
                "flow_run_id": str(flow_run_id) if flow_run_id is not None else None,
                "flow_run_name": flow_run.name if flow_run is not None else None,
                "flow_name": flow_run.flow_name if flow_run is not None else None,
            }
            if task_run is not None:
                fields["task_run_id"] = str(task_run.id)
                fields["task_run_name"] = task_run.name
                fields["task_name"] = task_run.task_name
            self._fields = fields
        return fields


class RemoteTarget(_Target):
    """The log destination of a task body running in a worker process (another process or a
    Dask worker): lines are collected here and return to the orchestrating process with the
    body's outcome, which queues them for the run (``loggers.replay_lines``)."""

    __slots__ = ("collect", "log_prints")

    def __init__(self, fields: dict[str, Any], level: int, log_prints: bool = False) -> None:
        self.log_prints = log_prints
        self._fields = fields
        self._label = fields.get("task_run_name")
        self._flow_run = None
        self._task_run = None
        self.flow_run_id = None
        self.task_run_id = None
        # A logger of its own, outside the logging tree: the level is the orchestrating
        # process's, and the worker's logging configuration is left alone.
        self.logger = logging.Logger(TASK_RUNS, level)
        self.collect = []


# The collecting target of the task body running here in a worker process, if any.
remote_target: ContextVar[RemoteTarget | None] = ContextVar("remote_log_target", default=None)

_targets: dict[uuid.UUID, _Target] = {}


def _target_of(ctx: ctxmod.FlowRunContext | ctxmod.TaskRunContext | TaskRun) -> _Target:
    if isinstance(ctx, TaskRun):
        run_id = ctx.id
    else:
        run_id = ctx.task_run.id if isinstance(ctx, ctxmod.TaskRunContext) else ctx.flow_run.id
    target = _targets.get(run_id)
    if target is None:
        target = _make_target(ctx)
        if len(_targets) >= _MAX_TARGETS:
            _targets.clear()  # a cache: an entry of a run still logging is simply rebuilt
        _targets[run_id] = target
    return target


def _make_target(ctx: ctxmod.FlowRunContext | ctxmod.TaskRunContext | TaskRun) -> _Target:
    task_run: TaskRun | None
    flow_ctx: ctxmod.FlowRunContext | None
    if not isinstance(ctx, ctxmod.FlowRunContext):
        task_run = ctx if isinstance(ctx, TaskRun) else ctx.task_run
        flow_ctx = _flow_var.get()
        flow_run_id = task_run.flow_run_id
        if flow_ctx is not None:
            run_id = flow_ctx.flow_run.id
            # UUID's == is Python code: the same object (the usual case) needs no comparing.
            if run_id is not flow_run_id and run_id != flow_run_id:
                flow_ctx = None  # a task context handed in explicitly, from another flow run
        logger = _task_runs_logger
    else:
        task_run, flow_ctx = None, ctx
        flow_run_id = ctx.flow_run.id
        logger = _flow_runs_logger
    if flow_ctx is not None:
        settings = flow_ctx.settings
        if settings is not None:
            return _Target(
                flow_ctx.flow_run,
                task_run,
                flow_run_id,
                logger,
                flow_ctx.store,
                settings.logging.max_lines_per_run,
            )
    settings = get_current_settings()
    return _Target(
        flow_ctx.flow_run if flow_ctx is not None else None,
        task_run,
        flow_run_id,
        logger,
        flow_ctx.store if flow_ctx is not None else get_store(settings.database_path),
        settings.logging.max_lines_per_run,
    )


def _current_target() -> _Target | None:
    ctx = _task_var.get() or _flow_var.get()
    return _target_of(ctx) if ctx is not None and not _disabled.get() else None


@contextlib.contextmanager
def disable_run_logger() -> Iterator[None]:
    """Make run loggers (and ``print`` capture) inside the block do nothing.

    Meant for calling a task's or flow's ``.fn`` directly, e.g. in unit tests:
    ``get_run_logger()`` then returns a silent logger instead of raising.
    """
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)
