"""What the commands share: exit codes, the usage error, JSON and log-line output."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from millstream._engine.model.records import LogRecord
from millstream._tables import when

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_RUN_NOT_COMPLETED",
    "EXIT_USAGE",
    "LOG_SETTLE_SECONDS",
    "UsageError",
    "as_json",
    "log_line",
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


def log_line(line: LogRecord) -> str:
    """One stored log line as the commands print it: time, level, logger, message."""
    level = logging.getLevelName(line.level)
    return f"{when(line.timestamp)} {level:<8} {line.name}: {line.message}"
