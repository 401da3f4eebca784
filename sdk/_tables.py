"""Plain-text tables and time formatting for the command line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; '(none)' for no rows."""
    if not rows:
        return "(none)"
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(str(cell))) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def when(value: dt.datetime | None) -> str:
    """A timestamp in local time, to the second ('-' when missing)."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    """How long between two times ('-' when not started, 'running' when not ended)."""
    if start is None:
        return "-"
    if end is None:
        return "running"
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def fields_text(fields: Mapping[str, Any] | None) -> str:
    """A log line's extra fields as the console shows them: ``key=value`` (text as it is,
    other values as their repr), space separated ('' when there are none)."""
    if not fields:
        return ""
    return " ".join(f"{k}={v}" if type(v) is str else f"{k}={v!r}" for k, v in fields.items())
