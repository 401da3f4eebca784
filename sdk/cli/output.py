"""What the commands share: exit codes, the usage error, JSON, tables, colours, log lines.

Colours and relative times are for people: they are used when stdout is a terminal, and never
when it is piped or ``NO_COLOR`` is set (https://no-color.org) or ``TERM=dumb``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from millstream._engine.model.records import LogRecord
from millstream._tables import fields_text, when

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_RUN_NOT_COMPLETED",
    "EXIT_USAGE",
    "LOG_SETTLE_SECONDS",
    "UsageError",
    "as_json",
    "colour_enabled",
    "log_line",
    "log_line_dict",
    "moment",
    "state_text",
    "table",
]

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE = 0, 1, 2
# `deployments run --watch` of a run that ends Failed, Crashed or Cancelled: 1, as Prefect's.
EXIT_RUN_NOT_COMPLETED = 1
EXIT_INTERRUPTED = 130  # what a shell reports for a command stopped by Ctrl-C
# How long after a run's final state its log lines are all readable (``runs logs --follow``,
# ``deployments run --watch``): a run's last lines and its hooks' lines are committed just
# after that state.
LOG_SETTLE_SECONDS = 1.0


class UsageError(Exception):
    """A command line that parses but makes no sense (a bad value)."""


def as_json(value: Any) -> str:
    """``value`` as one line of JSON (what ``--json`` prints); unknown types as their str."""
    return msgspec.json.encode(value, enc_hook=str).decode()


def colour_enabled(stream: Any = None) -> bool:
    """Whether to colour output for ``stream`` (stdout): a terminal, no ``NO_COLOR``."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


_STATE_COLOURS = {
    "COMPLETED": "32",  # green
    "FAILED": "31",  # red
    "CRASHED": "1;31",
    "CANCELLED": "90",  # grey
    "CANCELLING": "90",
    "RUNNING": "36",  # cyan
    "PENDING": "33",  # yellow
    "SCHEDULED": "33",
    "PAUSED": "35",  # magenta
}
_LEVEL_COLOURS = {"DEBUG": "90", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _paint(text: str, code: str | None) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code and text and colour_enabled() else text


def state_text(name: str | None, state_type: Any = None) -> str:
    """A state's name, coloured by its type on a terminal."""
    kind = getattr(state_type, "value", state_type) or (name or "").upper()
    return _paint(name or "", _STATE_COLOURS.get(str(kind)))


def moment(value: dt.datetime | None) -> str:
    """A time as people read it: relative ("3 min ago") on a terminal, else the local time."""
    if value is None:
        return "-"
    if not colour_enabled():
        return when(value)
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or unit == "s":
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    return when(value)  # pragma: no cover - the loop always returns


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (colour codes take no width); '(none)' if empty."""
    if not rows:
        return "(none)"

    def width(cell: str) -> int:
        return len(_ANSI.sub("", cell))

    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, width(str(c))) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [str(c) + " " * (w - width(str(c))) for c, w in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _ms(value: dt.datetime) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def log_line(line: LogRecord, label: str | None = None) -> str:
    """One stored log line as the commands print it: time (ms), level, logger, the task run's
    name when it came from one, message, then its extra fields (``key=value``)."""
    level = logging.getLevelName(line.level)
    shown = _paint(f"{level:<8}", _LEVEL_COLOURS.get(level))
    where = f"{line.name} [{label}]" if label else line.name
    text = f"{_ms(line.timestamp)} {shown} {where}: {line.message}"
    # The line's extra fields follow the message, as the console showed them.
    return f"{text} {fields_text(line.extra)}" if line.extra else text


def log_line_dict(line: LogRecord, label: str | None = None) -> dict[str, Any]:
    """One stored log line as ``--json`` shows it."""
    return {
        "timestamp": line.timestamp,
        "level": logging.getLevelName(line.level),
        "logger": line.name,
        "flow_run_id": line.flow_run_id,
        "task_run_id": line.task_run_id,
        "task_run_name": label,
        "message": line.message,
        "extra": line.extra,
    }
