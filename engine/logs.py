"""The only logging configuration: run loggers, ``print`` capture, console rendering through
structlog, and run log lines queued for the store (capped per run)."""

from __future__ import annotations

import builtins
import contextlib
import logging
import sys
import threading
from collections.abc import Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any

from engine import context as ctxmod
from engine.exceptions import MissingContextError
from engine.records import LogRecord
from engine.states import now

ROOT = "millstream"
_disabled: ContextVar[bool] = ContextVar("run_logger_disabled", default=False)


class RunLoggerAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records carry the run they come from (and any extra fields given)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs


def _run_fields(ctx: ctxmod.FlowRunContext | ctxmod.TaskRunContext) -> dict[str, Any]:
    if isinstance(ctx, ctxmod.TaskRunContext):
        flow_ctx = ctxmod.flow_run_var.get()
        fields: dict[str, Any] = {
            "task_run_id": str(ctx.task_run.id),
            "task_run_name": ctx.task_run.name,
            "task_name": ctx.task_run.task_name,
        }
        if flow_ctx is not None:
            fields.update(_run_fields(flow_ctx))
        return fields
    return {
        "flow_run_id": str(ctx.flow_run.id),
        "flow_run_name": ctx.flow_run.name,
        "flow_name": ctx.flow_run.flow_name,
    }


def get_run_logger(
    context: ctxmod.FlowRunContext | ctxmod.TaskRunContext | None = None, **extra: Any
) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """The logger of the current task run (inside a task) or flow run.

    Raises ``MissingContextError`` outside runs. Extra keyword arguments are added to every
    record.
    """
    if _disabled.get():
        silent = logging.getLogger(f"{ROOT}.disabled")
        silent.disabled = True
        return RunLoggerAdapter(silent, {})
    ctx = context or ctxmod.task_run_var.get() or ctxmod.flow_run_var.get()
    if ctx is None:
        raise MissingContextError("There is no active flow or task run context.")
    configure()
    kind = "task_runs" if isinstance(ctx, ctxmod.TaskRunContext) else "flow_runs"
    return RunLoggerAdapter(logging.getLogger(f"{ROOT}.{kind}"), {**_run_fields(ctx), **extra})


def get_logger(name: str | None = None) -> logging.Logger:
    """A standard library logger under Millstream's logger tree."""
    configure()
    return logging.getLogger(f"{ROOT}.{name}" if name else ROOT)


@contextlib.contextmanager
def disable_run_logger() -> Iterator[None]:
    """Make run loggers inside the block no-ops (e.g. to test tasks outside the engine)."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


# -- persisting run log lines -------------------------------------------------------------------
class _Capped:
    """Per-run line counts, so a log flood cannot fill the disk."""

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}
        self.dropped: dict[Any, int] = {}
        self.lock = threading.Lock()


_capped = _Capped()


class StoreHandler(logging.Handler):
    """Queues the records emitted while a run is current as log rows of that run."""

    def emit(self, record: logging.LogRecord) -> None:
        task_ctx = ctxmod.task_run_var.get()
        flow_ctx = ctxmod.flow_run_var.get()
        if task_ctx is None and flow_ctx is None:
            return
        try:
            settings = _settings(flow_ctx)
            run_key = flow_ctx.flow_run.id if flow_ctx is not None else task_ctx.task_run.id  # type: ignore[union-attr]
            with _capped.lock:
                count = _capped.counts.get(run_key, 0) + 1
                _capped.counts[run_key] = count
                if count > settings.logging.max_lines_per_run:
                    _capped.dropped[run_key] = _capped.dropped.get(run_key, 0) + 1
                    return
            store = _store(flow_ctx, settings)
            store.put_logs(
                [
                    LogRecord(
                        flow_run_id=flow_ctx.flow_run.id if flow_ctx is not None else None,
                        task_run_id=task_ctx.task_run.id if task_ctx is not None else None,
                        level=record.levelno,
                        name=record.name,
                        message=record.getMessage(),
                        timestamp=now(),
                    )
                ]
            )
        except Exception:
            self.handleError(record)


def _settings(flow_ctx: ctxmod.FlowRunContext | None) -> Any:
    if flow_ctx is not None and flow_ctx.settings is not None:
        return flow_ctx.settings
    from engine.settings import get_current_settings

    return get_current_settings()


def _store(flow_ctx: ctxmod.FlowRunContext | None, settings: Any) -> Any:
    if flow_ctx is not None:
        return flow_ctx.store
    from engine.store import get_store

    return get_store(settings.database_path)


def run_finished(flow_run_id: Any, store: Any) -> None:
    """Forget a finished run's line count; say in its last line how many lines were dropped."""
    with _capped.lock:
        _capped.counts.pop(flow_run_id, None)
        dropped = _capped.dropped.pop(flow_run_id, 0)
    if dropped:
        store.put_logs(
            [
                LogRecord(
                    flow_run_id=flow_run_id,
                    task_run_id=None,
                    level=logging.WARNING,
                    name=f"{ROOT}.flow_runs",
                    message=f"{dropped} log lines of this run were dropped: the cap of "
                    f"{_settings(None).logging.max_lines_per_run} lines per run was reached "
                    "(MILLSTREAM_LOGGING_MAX_LINES_PER_RUN)",
                    timestamp=now(),
                )
            ]
        )


# -- print capture ------------------------------------------------------------------------------
_original_print = builtins.print


def _print(
    *args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
) -> None:
    if file is None or file is sys.stdout:
        ctx = ctxmod.task_run_var.get() or ctxmod.flow_run_var.get()
        if ctx is not None and ctx.log_prints:
            get_run_logger(ctx).info((" " if sep is None else sep).join(map(str, args)))
            return
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


# -- configuration ------------------------------------------------------------------------------
class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_configured: tuple[str, str] | None = None
_lock = threading.Lock()


def configure() -> None:
    """Set up Millstream's handlers once (again if the level or format setting changed)."""
    global _configured
    from engine.settings import get_current_settings

    settings = get_current_settings()
    wanted = (settings.logging.level, settings.logging.format)
    if _configured == wanted:
        return
    with _lock:
        if _configured == wanted:
            return
        import structlog  # imported on first use: it is the largest part of import time

        renderer: Any = (
            structlog.processors.JSONRenderer()
            if settings.logging.format == "json"
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        formatter = structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
        root = logging.getLogger(ROOT)
        for handler in list(root.handlers):
            if getattr(handler, "_millstream", False):
                root.removeHandler(handler)
        console = _StderrHandler()
        console.setFormatter(formatter)
        console._millstream = True  # type: ignore[attr-defined]
        root.addHandler(console)
        root.setLevel(settings.logging.level)
        # Records of any logger emitted inside a run are persisted with the run.
        top = logging.getLogger()
        if not any(isinstance(h, StoreHandler) for h in top.handlers):
            top.addHandler(StoreHandler())
        builtins.print = _print
        _configured = wanted
