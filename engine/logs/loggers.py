"""Run loggers: get_run_logger, the engine's own lines about runs, and Millstream's loggers."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from millstream._engine import observe
from millstream._engine.exceptions import MissingContextError
from millstream._engine.logs.configure import configure
from millstream._engine.logs.handlers import (
    _CONSOLE,
    _DONE,
    _console,
    _exception_text,
    _other_handlers,
)
from millstream._engine.logs.render import _state
from millstream._engine.logs.sink import _sink
from millstream._engine.logs.targets import (
    _KEEP,
    _SHOW,
    FLOW_RUNS,
    ROOT,
    _disabled,
    _flow_runs_logger,
    _flow_var,
    _make_target,
    _Target,
    _target_of,
    _targets,
    _task_runs_logger,
    _task_var,
    remote_target,
)
from millstream._engine.model.records import TaskRun
from millstream._engine.orchestrate import context as ctxmod

# Attributes of a stdlib LogRecord: an extra field named like one would make
# logging.Logger.makeRecord raise when the line is handed to other handlers.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


# -- run loggers --------------------------------------------------------------------------------
class RunLogger(logging.LoggerAdapter[logging.Logger]):
    """The logger of one flow or task run; its lines carry the run's fields and the extras given.

    A line is checked against the level, formatted and queued; rendering and storing happen on
    the log thread. Other handlers on the logger's path (pytest's caplog, the application's
    own) still receive a standard ``logging.LogRecord`` of it.
    """

    def __init__(
        self, target: _Target | None, logger: logging.Logger, extra: Mapping[str, Any]
    ) -> None:
        super().__init__(logger, {**(target.fields if target else {}), **extra})
        self._target = target
        self._own = dict(extra) or None

    def debug(
        self,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at DEBUG."""
        if self.logger.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def info(
        self,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at INFO."""
        if self.logger.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def warning(
        self,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at WARNING."""
        if self.logger.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def error(
        self,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at ERROR."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def exception(
        self,
        msg: object,
        *args: object,
        exc_info: object = True,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at ERROR with the exception being handled."""
        if self.logger.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def critical(
        self,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at CRITICAL."""
        if self.logger.isEnabledFor(logging.CRITICAL):
            self._emit(logging.CRITICAL, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def log(
        self,
        level: int,
        msg: object,
        *args: object,
        exc_info: object = None,
        stack_info: bool = False,
        stacklevel: int = 1,
        extra: Mapping[str, object] | None = None,
        **kwargs: object,
    ) -> None:
        """Log ``msg % args`` at ``level``."""
        if not isinstance(level, int):
            raise TypeError(f"Log level must be an integer, got {level!r}")
        if self.logger.isEnabledFor(level):
            self._emit(level, msg, args, exc_info, stack_info, stacklevel, extra, kwargs)

    def _emit(
        self,
        level: int,
        msg: object,
        args: tuple[object, ...],
        exc_info: object,
        stack_info: bool,
        stacklevel: int,
        extra: Mapping[str, object] | None,
        kwargs: Mapping[str, object],
    ) -> None:
        target = self._target
        if target is None or _disabled.get():
            return
        if kwargs:
            raise TypeError(f"Unexpected keyword arguments for a log call: {sorted(kwargs)}")
        own = self._own
        if extra:
            _check_extra(extra)
            own = {**own, **extra} if own else dict(extra)
        # The frames above _submit up to the user's call: this one and the level method.
        _submit(target, level, msg, args, exc_info, stack_info, stacklevel + 2, own)


def _submit(
    target: _Target,
    level: int,
    msg: object,
    args: tuple[object, ...],
    exc_info: object,
    stack_info: bool,
    stacklevel: int,
    extra: dict[str, Any] | None,
    exc_text: str | None = None,
) -> None:
    """Queue one run line, and hand it to other handlers if there are any.

    ``stacklevel`` counts the frames above this one up to the user's call (1: the caller, as
    ``sys._getframe`` counts from here). ``exc_text``: the traceback of ``exc_info`` when the
    caller has it formatted already.
    """
    message = _format(msg, args)
    traced = observe.log_ids()  # None (one dict lookup) unless OpenTelemetry tracing is on
    if traced is not None:
        extra = {**extra, **traced} if extra else traced
    if exc_text is None and exc_info:
        exc_text = _exception_text(exc_info)
    if stack_info:
        stack = "".join(traceback.format_stack(sys._getframe(stacklevel)))
        exc_text = f"{exc_text}\n" if exc_text else ""
        exc_text += "Stack (most recent call last):\n" + stack.rstrip("\n")
    logger = target.logger
    if target.collect is not None:  # in a worker process: shipped back with the outcome
        target.collect.append((level, logger.name, message, time.time(), exc_text, extra))
        return
    others = _other_handlers(logger, level)
    # Shown unless the console handler's level says otherwise or the application's own console
    # handler shows it.
    where = _KEEP | _SHOW if others != _CONSOLE and level >= _console.level else _KEEP
    _sink.put((target, level, logger.name, message, time.time(), exc_text, extra, where))
    if others:
        fields = {**target.fields, **extra} if extra else dict(target.fields)
        fields[_DONE] = True
        logger.log(
            level,
            msg,
            *args,
            exc_info=exc_info,  # type: ignore[arg-type]
            stack_info=stack_info,
            stacklevel=stacklevel + 1,  # logging counts from its caller: this frame
            extra=fields,
        )


def _format(msg: object, args: tuple[object, ...] | Mapping[str, object]) -> str:
    """``msg % args`` as the standard library does it, never raising."""
    if not args:
        return msg if type(msg) is str else str(msg)
    if len(args) == 1 and isinstance(args, tuple) and isinstance(args[0], Mapping) and args[0]:
        args = args[0]
    try:
        return str(msg) % args
    except Exception as exc:
        # A bad format string must not break the user's run: keep everything that was given.
        return f"{msg!s} {args!r} (the log message could not be formatted: {exc})"


def _check_extra(extra: Mapping[str, object]) -> None:
    for key in extra:
        if key in _RESERVED:
            raise ValueError(
                f"Log field {key!r} clashes with an attribute of logging.LogRecord; rename it"
            )


def replay_lines(ctx: ctxmod.TaskRunContext, lines: list[tuple[Any, ...]]) -> None:
    """Queue for the run of ``ctx`` the lines its body logged in a worker process
    (``(level, logger name, message, created, exception text, extra)`` each)."""
    if _disabled.get() or not lines:
        return
    target = _target_of(ctx)
    logger = target.logger
    for level, name, message, created, exc_text, extra in lines:
        others = _other_handlers(logger, level)
        where = _KEEP | _SHOW if others != _CONSOLE and level >= _console.level else _KEEP
        _sink.put((target, level, name, message, created, exc_text, extra, where))
        if others:
            fields = {**target.fields, **extra} if extra else dict(target.fields)
            fields[_DONE] = True
            logger.log(level, "%s", message, extra=fields)


def get_run_logger(
    context: ctxmod.FlowRunContext | ctxmod.TaskRunContext | None = None, **extra: Any
) -> RunLogger:
    """The logger of the current task run (inside a task) or flow run (or of ``context``).

    Lines carry ``flow_run_id``, ``flow_run_name``, ``flow_name`` (and ``task_run_id``,
    ``task_run_name``, ``task_name`` in a task) plus the keyword arguments given; they are shown
    on the console and kept in the database with the run. Raises ``MissingContextError``
    outside runs (inside ``disable_run_logger()`` it returns a logger that does nothing).
    """
    if context is None and (remote := remote_target.get()) is not None:
        _check_extra(extra)
        return RunLogger(remote, remote.logger, extra)  # a body running in a worker process
    ctx = context if context is not None else (_task_var.get() or _flow_var.get())
    _check_extra(extra)
    if ctx is None:
        if _disabled.get():
            return RunLogger(None, logging.getLogger(FLOW_RUNS), extra)
        raise MissingContextError("There is no active flow or task run context.")
    if _state.configured is None:
        configure()
    target = _target_of(ctx)
    return RunLogger(target, target.logger, extra)


# -- the engine's own lines about a run (start, retries, failure, final state) ------------------


def task_line_enabled(level: int) -> bool:
    """Whether a task run line at ``level`` would be kept: check it before building one."""
    return _task_runs_logger.isEnabledFor(level)


def flow_line_enabled(level: int) -> bool:
    """Whether a flow run line at ``level`` would be kept: check it before building one."""
    return _flow_runs_logger.isEnabledFor(level)


def task_run_line(
    task_run: TaskRun,
    level: int,
    message: str,
    exc: BaseException | None = None,
    exc_text: str | None = None,
    *,
    last: bool = False,
) -> None:
    """Log ``message`` (a finished text, not a format) as the engine, on ``task_run``'s logger,
    with ``exc``'s traceback (``exc_text`` when already formatted). ``last``: the run's final
    line, after which its cached log destination is dropped.

    The caller checks ``task_line_enabled(level)`` first, so a line below the level costs
    nothing to build.
    """
    if _disabled.get():
        return
    target = _targets.pop(task_run.id, None) if last else None
    if target is None:
        target = _make_target(task_run) if last else _target_of(task_run)
    _submit(target, level, message, (), exc, False, 2, None, exc_text)


def flow_run_line(
    flow_ctx: ctxmod.FlowRunContext,
    level: int,
    message: str,
    exc: BaseException | None = None,
    exc_text: str | None = None,
) -> None:
    """Log ``message`` (a finished text) as the engine, on the flow run's logger, with
    ``exc``'s traceback (``exc_text`` when already formatted); see ``task_run_line``."""
    if _disabled.get():
        return
    _submit(_target_of(flow_ctx), level, message, (), exc, False, 2, None, exc_text)


def get_logger(name: str | None = None) -> logging.Logger:
    """A standard library logger in Millstream's tree: ``millstream`` or ``millstream.<name>``.

    Its records are shown on the console, and kept with the run when emitted inside one.
    """
    if _state.configured is None:
        configure()
    if not name or name == ROOT or name.startswith(ROOT + "."):
        return logging.getLogger(name or ROOT)
    return logging.getLogger(f"{ROOT}.{name}")
