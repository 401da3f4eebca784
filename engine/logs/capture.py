"""Print capture: inside a run with log_prints, print to stdout becomes a line of the run logger."""

from __future__ import annotations

import builtins
import logging
import sys
from collections.abc import Callable
from typing import Any

from millstream._engine.logs.loggers import _submit
from millstream._engine.logs.targets import (
    _disabled,
    _flow_var,
    _target_of,
    _task_var,
    remote_target,
)

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
        if (remote := remote_target.get()) is not None and remote.log_prints:
            # A task body with log_prints in a worker process: the line goes back with it.
            message = (" " if sep is None else sep).join(map(str, values))
            _submit(remote, logging.INFO, message, (), None, False, 2, None)
            return
    _original_print(*values, sep=sep, end=end, file=file, flush=flush)


_print.__millstream_original__ = _original_print  # type: ignore[attr-defined]
# Installed once, on first import: outside runs a print costs two ContextVar lookups more.
builtins.print = _print
