"""Millstream's standard library handlers: the console one, and the root one keeping records."""

from __future__ import annotations

import logging
import sys
import traceback

from millstream._engine.logs.sink import _sink
from millstream._engine.logs.targets import _KEEP, _SHOW, ROOT, _current_target, _Target

# Set on the stdlib records made from run-logger lines for other handlers (caplog, the
# application's): the root handler skips them, since they are already queued.
_DONE = "_millstream_run_line"

_NONE, _OTHER, _CONSOLE = 0, 1, 2


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
