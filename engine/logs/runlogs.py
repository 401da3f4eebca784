"""The only logging configuration: run loggers, print capture, rendering, capped run log rows."""

from __future__ import annotations

import atexit
import builtins
import collections
import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeAlias

import msgspec

from millstream._engine.exceptions import MissingContextError
from millstream._engine.model.records import FlowRun, LogRecord, TaskRun
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.store import Store, get_store

ROOT = "millstream"
FLOW_RUNS = "millstream.flow_runs"
TASK_RUNS = "millstream.task_runs"
# The logger name of the row that says how many lines of a run were dropped (see _Cap).
CAP_LOGGER = "millstream.logs"
CAP_SETTING = "MILLSTREAM_LOGGING_MAX_LINES_PER_RUN"

# How long the log thread lets a burst gather before rendering it: one console write and one
# hand-over to the store per batch instead of one per line, still prompt for a human watching.
_GROUP_DELAY = 0.01
_BATCH = 4_096
# While lines of a run are being dropped, its "N lines dropped" row is rewritten at most this
# often (seconds); the exact count lands when the run ends, or this long after the flood stops.
_REPORT_EVERY = 1.0
# Bounds on per-run bookkeeping, for runs whose end is never announced (see run_finished).
_MAX_TARGETS = 1_024
_MAX_CAPS = 4_096

# Set on the stdlib records made from run-logger lines for other handlers (caplog, the
# application's): the root handler skips them, since they are already queued.
_DONE = "_millstream_run_line"
# Attributes of a stdlib LogRecord: an extra field named like one would make
# logging.Logger.makeRecord raise when the line is handed to other handlers.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

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
    """A run's log destination and labels, computed once per run (not once per line)."""

    __slots__ = (
        "_fields",
        "_flow_run",
        "_task_run",
        "flow_run_id",
        "key",
        "label",
        "limit",
        "logger",
        "store",
        "task_run_id",
    )

    def __init__(
        self,
        *,
        flow_run: FlowRun | None,
        task_run: TaskRun | None,
        flow_run_id: uuid.UUID | None,
        task_run_id: uuid.UUID | None,
        label: str,
        logger: logging.Logger,
        store: Store,
        limit: int,
    ) -> None:
        self._fields: dict[str, Any] | None = None
        self._flow_run = flow_run
        self._task_run = task_run
        self.flow_run_id = flow_run_id
        self.task_run_id = task_run_id
        # Lines are capped per flow run (a task's lines count towards its flow run's); a task
        # run outside any flow is a run of its own.
        key = flow_run_id if flow_run_id is not None else task_run_id
        assert key is not None
        self.key: uuid.UUID = key
        self.label = label
        self.logger = logger
        self.store = store
        self.limit = limit

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
        if flow_ctx is not None and flow_ctx.flow_run.id != task_run.flow_run_id:
            flow_ctx = None  # a task context handed in explicitly, from another flow run
        flow_run_id = task_run.flow_run_id
        label, logger = f"Task run {task_run.name!r}", _task_runs_logger
    else:
        task_run, flow_ctx = None, ctx
        flow_run_id = ctx.flow_run.id
        label, logger = f"Flow run {ctx.flow_run.name!r}", _flow_runs_logger
    settings = flow_ctx.settings if flow_ctx is not None else None
    if settings is None:
        from millstream._engine.settings import get_current_settings

        settings = get_current_settings()
    return _Target(
        flow_run=flow_ctx.flow_run if flow_ctx is not None else None,
        task_run=task_run,
        flow_run_id=flow_run_id,
        task_run_id=task_run.id if task_run is not None else None,
        label=label,
        logger=logger,
        store=flow_ctx.store if flow_ctx is not None else get_store(settings.database_path),
        limit=settings.logging.max_lines_per_run,
    )


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


# What _other_handlers finds besides Millstream's handler.
_NONE, _OTHER, _CONSOLE = 0, 1, 2


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
    if exc_text is None and exc_info:
        exc_text = _exception_text(exc_info)
    if stack_info:
        stack = "".join(traceback.format_stack(sys._getframe(stacklevel)))
        exc_text = f"{exc_text}\n" if exc_text else ""
        exc_text += "Stack (most recent call last):\n" + stack.rstrip("\n")
    logger = target.logger
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


def _exception_text(exc_info: object) -> str | None:
    """The traceback of ``exc_info`` (True: the exception being handled), as text."""
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is None:
        return None
    # Formatted now, on the caller's thread: the traceback's frames are not kept alive.
    return "".join(traceback.format_exception(exc)).rstrip("\n")


def _check_extra(extra: Mapping[str, object]) -> None:
    for key in extra:
        if key in _RESERVED:
            raise ValueError(
                f"Log field {key!r} clashes with an attribute of logging.LogRecord; rename it"
            )


def _other_handlers(logger: logging.Logger, level: int) -> int:
    """Which handlers besides Millstream's see a record of ``logger`` at ``level``.

    ``_CONSOLE`` when one of them writes it to stdout or stderr (the application set up its own
    console logging: Millstream leaves the console line to it, so no line shows twice),
    ``_OTHER`` for others only (pytest's caplog, files), ``_NONE`` when there are none.
    """
    found = _NONE
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler is _capture or handler is _console or level < handler.level:
                continue
            if isinstance(handler, logging.StreamHandler) and handler.stream in (
                sys.stderr,
                sys.stdout,
                sys.__stderr__,
                sys.__stdout__,
            ):
                return _CONSOLE
            found = _OTHER
        if not current.propagate:
            break
        current = current.parent
    return found


def get_run_logger(
    context: ctxmod.FlowRunContext | ctxmod.TaskRunContext | None = None, **extra: Any
) -> RunLogger:
    """The logger of the current task run (inside a task) or flow run (or of ``context``).

    Lines carry ``flow_run_id``, ``flow_run_name``, ``flow_name`` (and ``task_run_id``,
    ``task_run_name``, ``task_name`` in a task) plus the keyword arguments given; they are shown
    on the console and kept in the database with the run. Raises ``MissingContextError``
    outside runs (inside ``disable_run_logger()`` it returns a logger that does nothing).
    """
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


# -- standard library records -------------------------------------------------------------------
class _Handler(logging.Handler):
    """Base of Millstream's two handlers: ``emit`` only queues, so no handler lock is taken."""

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit ``record``."""
        if self.filter(record):
            self.emit(record)
            return True
        return False

    def queue(self, record: logging.LogRecord, target: _Target | None, where: int) -> None:
        """Queue ``record`` for the console (``_SHOW``) and/or ``target``'s rows (``_KEEP``)."""
        exc_text = record.exc_text
        if exc_text is None and record.exc_info:
            exc_text = _exception_text(record.exc_info)
        if record.stack_info:
            exc_text = f"{exc_text}\n{record.stack_info}" if exc_text else record.stack_info
        head = (target, record.levelno, record.name, record.getMessage(), record.created)
        _sink.put((*head, exc_text, None, where))


def _current_target() -> _Target | None:
    ctx = _task_var.get() or _flow_var.get()
    return _target_of(ctx) if ctx is not None and not _disabled.get() else None


class _ConsoleHandler(_Handler):
    """On the ``millstream`` logger: shows Millstream's records on the console (stderr).

    Its level is the console's, for run loggers too: ``setLevel(logging.CRITICAL)`` on it
    silences the console while lines are still kept with their runs.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for the console (labelled with the run it was emitted in)."""
        try:
            if record.__dict__.get(_DONE):
                return  # made from a run logger line, which is already queued
            if _other_handlers(logging.getLogger(record.name), record.levelno) == _CONSOLE:
                return  # the application's own console handler shows it
            self.queue(record, _current_target(), _SHOW)
        except Exception:
            self.handleError(record)


class _CaptureHandler(_Handler):
    """On the root logger: records of any logger emitted while a run is current are kept with
    that run.

    Other loggers' records are also shown where the standard library would have shown them
    itself (no other handler on their path: its last-resort output to stderr), so that this
    handler hides nothing, and an application's own logging setup never shows a line twice.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for the current run's rows (and the console, as said above)."""
        try:
            if record.__dict__.get(_DONE):
                return
            target = _current_target()
            where = _KEEP if target is not None else 0
            name = record.name
            if name != ROOT and not name.startswith("millstream."):
                last_resort = logging.lastResort
                if (
                    last_resort is not None
                    and record.levelno >= last_resort.level
                    and _other_handlers(logging.getLogger(name), record.levelno) == _NONE
                ):
                    where |= _SHOW
            if where:
                self.queue(record, target, where)
        except Exception:
            self.handleError(record)


_console = _ConsoleHandler()
_capture = _CaptureHandler()


# -- rendering ----------------------------------------------------------------------------------
Renderer: TypeAlias = Callable[[Any, str, dict[str, Any]], str]

_LEVEL_NAMES = {level: logging.getLevelName(level) for level in range(0, 60, 10)}


def _level_name(level: int) -> str:
    name = _LEVEL_NAMES.get(level)
    return name if name is not None else logging.getLevelName(level)


class ConsoleRenderer:
    """A structlog renderer for people: ``12:00:00.123 | INFO    | Task run 'x-0' - message``.

    structlog's own ``dev.ConsoleRenderer`` costs about 10 µs a line, more than the budget of a
    whole log call; this one renders Prefect's familiar layout in well under 1 µs.
    """

    def __init__(self) -> None:
        self._millis = -1
        self._stamp = ""

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> str:
        """Render one event (keys ``created``, ``level``, ``label``, ``event``, then extras)."""
        millis = int(event_dict.pop("created") * 1000)
        if millis != self._millis:  # a flood logs many lines per millisecond: format once
            self._millis = millis
            second, rest = divmod(millis, 1000)
            self._stamp = time.strftime("%H:%M:%S", time.localtime(second)) + f".{rest:03d} | "
        level: str = event_dict.pop("level")
        label: str = event_dict.pop("label")
        event: str = event_dict.pop("event")
        exception: str | None = event_dict.pop("exception", None)
        line = f"{self._stamp}{_PADDED.get(level) or level.ljust(7)} | {label} - {event}"
        if event_dict:
            line += " " + " ".join(
                f"{k}={v}" if type(v) is str else f"{k}={v!r}" for k, v in event_dict.items()
            )
        return f"{line}\n{exception}\n" if exception else line + "\n"


_PADDED = {name: name.ljust(7) for name in _LEVEL_NAMES.values()}


_json_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_dumps(event_dict: dict[str, Any], **_: Any) -> str:
    return _json_encoder.encode(event_dict).decode()


def _json_renderer() -> Renderer:
    # structlog is imported only when JSON lines are asked for: it is ~50 ms of import time.
    import structlog

    json_renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)

    def render(logger: Any, method_name: str, event_dict: dict[str, Any]) -> str:
        out = json_renderer(logger, method_name, event_dict)
        return out if isinstance(out, str) else out.decode()

    return render


def _render_line(renderer: Renderer, json_lines: bool, entry: Entry) -> str:
    target, level, name, message, created, exc_text, extra, _ = entry
    event: dict[str, Any]
    if json_lines:
        event = {
            "timestamp": dt.datetime.fromtimestamp(created, dt.UTC),
            "level": _level_name(level).lower(),
            "logger": name,
            "event": message,
        }
        if target is not None:
            event.update(target.fields)
        if extra:
            event.update(extra)
        if exc_text:
            event["exception"] = exc_text
        return renderer(None, "", event) + "\n"
    event = {
        "created": created,
        "level": _level_name(level),
        # Run lines (and Millstream's own, inside a run) are labelled with the run, as Prefect
        # does; other loggers' records keep their logger's name.
        "label": target.label if target is not None and name.startswith(ROOT) else name,
        "event": message,
    }
    if extra:
        event.update(extra)
    if exc_text:
        event["exception"] = exc_text
    return renderer(None, "", event)


# -- the log thread: render, cap, hand over to the store ------------------------------------------
class _Cap:
    """Lines of one run so far, and how many were dropped past its limit.

    When the limit is reached one row is written at once, saying how many lines were dropped
    (so the cap needs no help from the engine). It stays the run's last row and is rewritten
    with the growing count: at most once a second during a flood, a second after the flood
    stops, when the run ends (``run_finished``) and at process exit.
    """

    __slots__ = (
        "count",
        "dropped",
        "flow_run_id",
        "last_report",
        "limit",
        "reported",
        "store",
        "task_run_id",
    )

    def __init__(self, target: _Target) -> None:
        # The marker is a row of the run the cap counts for: the flow run (not the task whose
        # line happened to be the first one dropped), or the task run outside any flow.
        self.flow_run_id = target.flow_run_id
        self.task_run_id = target.task_run_id if target.flow_run_id is None else None
        self.store = target.store
        self.limit = target.limit
        self.count = 0
        self.dropped = 0
        self.reported = 0
        self.last_report = 0.0


def _dropped_message(dropped: int, limit: int) -> str:
    lines = "log line of this run was" if dropped == 1 else "log lines of this run were"
    return (
        f"{dropped} {lines} dropped: the limit of {limit} lines per run was reached ({CAP_SETTING})"
    )


class _Sink:
    """The queue of log lines, and the one thread per process that renders and stores them."""

    def __init__(self) -> None:
        self.queue: collections.deque[Entry] = collections.deque()
        self.wake = threading.Event()
        self.lock = threading.RLock()  # one drainer at a time keeps lines in order
        self.pending = False
        self.thread: threading.Thread | None = None
        self.caps: collections.OrderedDict[uuid.UUID, _Cap] = collections.OrderedDict()
        self.dirty: set[_Cap] = set()

    def put(self, entry: Entry) -> None:
        """Queue a line (from any thread); the caller does no I/O."""
        self.queue.append(entry)
        if not self.pending:
            self.pending = True
            if self.thread is None:
                self._start()
            self.wake.set()

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                thread = threading.Thread(target=self._main, name="millstream-logs", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no new threads at interpreter exit: write right here
                    self.drain()
                    return
                self.thread = thread

    def _main(self) -> None:
        while True:
            self.wake.wait(_REPORT_EVERY if self.dirty else None)
            time.sleep(_GROUP_DELAY)
            # Cleared before draining: a line queued from now on wakes the next round.
            self.wake.clear()
            self.pending = False
            try:
                self.drain()
            except Exception as exc:  # the log thread must live on; say what went wrong
                _report_failure(exc)

    def drain(self) -> None:
        """Render and store every queued line (on the calling thread)."""
        with self.lock:
            queue = self.queue
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), _BATCH))]
                self._process(batch)
            now = time.monotonic()
            for cap in list(self.dirty):
                if now - cap.last_report >= _REPORT_EVERY:
                    self.report(cap)

    def _process(self, batch: list[Entry]) -> None:
        renderer, json_lines = _state.renderer, _state.json_lines
        text: list[str] = []
        rows: dict[Store, list[LogRecord]] = {}
        last: _Target | None = None
        cap: _Cap | None = None
        kept: list[LogRecord] = []
        for entry in batch:
            target, level, name, message, created, exc_text, _, where = entry
            if where & _SHOW:
                try:
                    text.append(_render_line(renderer, json_lines, entry))
                except Exception as exc:  # an extra field whose repr raises, say
                    text.append(f"{message} (this log line could not be rendered: {exc!r})\n")
            if target is None or not where & _KEEP:
                continue
            if target is not last or cap is None:  # floods come from one run: look up once
                last = target
                cap = self._cap(target)
                kept = rows.setdefault(target.store, [])
            cap.count += 1
            if cap.count > cap.limit:
                cap.dropped += 1
                if cap.dropped > 1:
                    self.dirty.add(cap)
                    continue
                # The first dropped line: its place goes to the marker row, counted later.
                cap.reported = 1
                cap.last_report = time.monotonic()
                text.append(_cap_notice(renderer, json_lines, target, cap.limit))
                rows.setdefault(cap.store, []).append(
                    LogRecord(
                        flow_run_id=cap.flow_run_id,
                        task_run_id=cap.task_run_id,
                        level=logging.WARNING,
                        name=CAP_LOGGER,
                        message=_dropped_message(1, cap.limit),
                        timestamp=dt.datetime.fromtimestamp(created, dt.UTC),
                    )
                )
                continue
            kept.append(
                LogRecord(
                    flow_run_id=target.flow_run_id,
                    task_run_id=target.task_run_id,
                    level=level,
                    name=name,
                    message=f"{message}\n{exc_text}" if exc_text else message,
                    timestamp=dt.datetime.fromtimestamp(created, dt.UTC),
                )
            )
        for store, records in rows.items():
            store.put_logs(records)
        if text:
            _write("".join(text))

    def _cap(self, target: _Target) -> _Cap:
        cap = self.caps.get(target.key)
        if cap is None:
            cap = self.caps[target.key] = _Cap(target)
            if len(self.caps) > _MAX_CAPS:
                # The oldest run whose end was never announced: final count, then forget it.
                _, oldest = self.caps.popitem(last=False)
                self.report(oldest)
        else:
            self.caps.move_to_end(target.key)
        return cap

    def report(self, cap: _Cap, store: Store | None = None) -> None:
        """Rewrite the run's "N lines dropped" row with the current count, if it grew."""
        self.dirty.discard(cap)
        if cap.dropped <= cap.reported:
            return
        cap.reported = cap.dropped
        cap.last_report = time.monotonic()
        # The marker is the run's last row under CAP_LOGGER.
        (store or cap.store).put_dropped_marker(
            cap.flow_run_id, cap.task_run_id, CAP_LOGGER, _dropped_message(cap.dropped, cap.limit)
        )

    def forget(self, run_id: uuid.UUID, store: Store | None) -> None:
        """Write a finished run's final dropped count and drop its bookkeeping."""
        with self.lock:
            cap = self.caps.pop(run_id, None)
            if cap is not None:
                self.report(cap, store)
            _targets.pop(run_id, None)

    def finish_all(self) -> None:
        """Write every outstanding dropped count (at process exit)."""
        with self.lock:
            for cap in list(self.dirty):
                self.report(cap)


def _cap_notice(renderer: Renderer, json_lines: bool, target: _Target, limit: int) -> str:
    message = (
        f"This run reached the limit of {limit} stored log lines ({CAP_SETTING}); "
        "further lines are shown but not stored"
    )
    entry: Entry = (target, logging.WARNING, CAP_LOGGER, message, time.time(), None, None, _SHOW)
    return _render_line(renderer, json_lines, entry)


def _write(text: str) -> None:
    stream = sys.stderr  # looked up per batch: it may have been replaced (pytest's capsys)
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stream: the lines are still stored


def _report_failure(exc: BaseException) -> None:
    with contextlib.suppress(Exception):
        stream = sys.__stderr__
        if stream is not None:
            stream.write(f"millstream: writing log lines failed: {exc!r}\n")


_sink = _Sink()


def flush() -> None:
    """Render and hand to the store every log line queued so far (on the calling thread)."""
    _sink.drain()


def run_finished(run_id: uuid.UUID, store: Store | None = None) -> None:
    """Tell the logs that a run ended: its queued lines are written out and, if lines of it
    were dropped, its last row gets the final count.

    For a flow run, and a task run outside any flow, before the run's flush point: what the run
    logged is then on the console, and durable once the store is flushed. ``store`` is the
    run's store (by default the one its lines went to).
    """
    _sink.drain()
    _sink.forget(run_id, store)


def _at_exit() -> None:
    # Registered after the store's close_all (imported above), so it runs first: the last
    # lines and counts are queued while the store can still write them.
    with contextlib.suppress(Exception):
        _sink.drain()
        _sink.finish_all()


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    # The child has no log thread; the parent's queued lines are the parent's to write.
    global _sink
    _sink = _Sink()
    _targets.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- print capture ------------------------------------------------------------------------------
_original_print: Callable[..., None] = getattr(builtins.print, "__millstream_original__", print)


def _print(
    *values: object,
    sep: str | None = " ",
    end: str | None = "\n",
    file: Any = None,
    flush: bool = False,
) -> None:
    """``print``; inside a run with ``log_prints``, to stdout: an INFO line of the run logger."""
    if file is None or file is sys.stdout:
        ctx = _task_var.get() or _flow_var.get()
        if ctx is not None and ctx.log_prints:
            if not _disabled.get():
                message = (" " if sep is None else sep).join(map(str, values))
                # stacklevel 2: the user's print call is right above this frame.
                _submit(_target_of(ctx), logging.INFO, message, (), None, False, 2, None)
            return
    _original_print(*values, sep=sep, end=end, file=file, flush=flush)


_print.__millstream_original__ = _original_print  # type: ignore[attr-defined]
# Installed once, on first import: outside runs a print costs two ContextVar lookups more.
builtins.print = _print


# -- configuration ------------------------------------------------------------------------------
class _State:
    """What ``configure`` applied: the settings it saw and the console renderer."""

    def __init__(self) -> None:
        self.configured: tuple[str, str] | None = None
        self.renderer: Renderer = ConsoleRenderer()
        self.json_lines = False
        self.lock = threading.Lock()


_state = _State()


def configure() -> None:
    """Apply the logging settings (``MILLSTREAM_LOGGING_LEVEL``, ``MILLSTREAM_LOGGING_FORMAT``).

    Cheap when nothing changed; the engine calls it when a top-level flow run starts.
    """
    from millstream._engine.settings import get_current_settings

    settings = get_current_settings().logging
    wanted = (settings.level, settings.format)
    # Installed on first use (not at import: an application's logging.basicConfig() made before
    # its first run still takes effect), and again if a logging.config call removed them.
    root, ours = logging.getLogger(), logging.getLogger(ROOT)
    if _capture not in root.handlers:
        root.addHandler(_capture)
    if _console not in ours.handlers:
        ours.addHandler(_console)
    if _state.configured == wanted:
        return
    with _state.lock:
        level = logging.getLevelName(settings.level)
        ours.setLevel(level)
        _capture.setLevel(level)  # what is kept; the console handler's own level stays free
        json_lines = settings.format == "json"
        renderer = _json_renderer() if json_lines else ConsoleRenderer()
        with _sink.lock:  # not in the middle of a batch
            _state.renderer, _state.json_lines = renderer, json_lines
        _state.configured = wanted
