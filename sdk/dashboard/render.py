"""What the templates show: state colours, times, safe markdown, result previews, timelines.

Every value reaches the page through Jinja2's autoescaping; the one exception is markdown,
rendered by markdown-it-py with raw HTML disabled and link targets checked (its ``commonmark``
preset with ``html: False``), so an artifact cannot put a script on the page.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
from markdown_it import MarkdownIt
from markupsafe import Markup

from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.results.faithful import _TAG_MSGPACK
from millstream._tables import fields_text as fields_text

__all__ = [
    "LEVELS",
    "STATE_COLOURS",
    "STATE_TYPES",
    "duration",
    "markdown",
    "pretty_json",
    "result_preview",
    "schedules",
    "table",
    "timeline",
    "when",
]


# Prefect's UI palette for state types.
STATE_COLOURS: dict[str, str] = {
    "SCHEDULED": "#e3a008",
    "PENDING": "#8b97a7",
    "RUNNING": "#1860f2",
    "COMPLETED": "#2ac769",
    "FAILED": "#fb4e4e",
    "CANCELLED": "#6b7280",
    "CANCELLING": "#6b7280",
    "CRASHED": "#f97316",
    "PAUSED": "#a1a1aa",
}
STATE_TYPES = list(STATE_COLOURS)
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def markdown(text: Any) -> Markup:
    """Markdown as HTML, raw HTML in it shown as text (markdown-it escapes it)."""
    return Markup(_markdown.render(str(text or "")))


def when(value: dt.datetime | None) -> str:
    """A time as UTC text to the millisecond ('' when missing)."""
    if value is None:
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def duration(run: FlowRun | TaskRun) -> str:
    """How long a run ran (a running one: so far)."""
    if run.start_time is None:
        return ""
    seconds = run.total_run_time.total_seconds()
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def schedules(text: str | None) -> list[str]:
    """A deployment's schedules (stored as JSON) as short descriptions."""
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return [str(text)]
    described = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("cron"):
            what = f"cron {item['cron']}"
        elif item.get("interval"):
            what = f"every {item['interval']:g}s"
        else:
            what = f"rrule {item.get('rrule')}"
        if item.get("timezone"):
            what += f" ({item['timezone']})"
        if item.get("active") is False:
            what += " (inactive)"
        described.append(what)
    return described


def pretty_json(value: Any) -> str:
    """JSON indented for reading (unknown types as their text)."""
    try:
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def table(data: Any) -> tuple[list[str], list[list[Any]]] | None:
    """A table artifact's (headers, rows): from columns, row dicts, or row lists."""
    try:
        value = json.loads(data) if isinstance(data, str) else data
    except ValueError:
        return None
    if isinstance(value, dict):
        headers = [str(k) for k in value]
        columns = [list(v) if isinstance(v, list) else [v] for v in value.values()]
        height = max((len(c) for c in columns), default=0)
        return headers, [[c[i] if i < len(c) else "" for c in columns] for i in range(height)]
    if isinstance(value, list) and all(isinstance(r, dict) for r in value):
        headers = list(dict.fromkeys(str(k) for r in value for k in r))
        return headers, [[r.get(h, "") for h in headers] for r in value]
    if isinstance(value, list) and all(isinstance(r, list) for r in value):
        width = max((len(r) for r in value), default=0)
        return [str(i) for i in range(width)], [list(r) for r in value]
    return None


def result_preview(blob: bytes | None, limit: int = 2_000) -> str | None:
    """A recorded result's value as text, where that is safe: inline JSON or msgpack only.

    Results stored with pickle (or in a file) are described, never loaded: loading would run
    code from the database in the dashboard's process.
    """
    if blob is None:
        return None
    from millstream._engine.results.refs import Envelope

    try:
        envelope = msgspec.msgpack.decode(blob, type=Envelope)
    except msgspec.DecodeError:
        return f"<{len(blob)} bytes, unreadable>"
    if envelope.data is None:
        return f"<stored in {envelope.path}/{envelope.key} ({envelope.serializer})>"
    try:
        if envelope.serializer == "json":
            text = pretty_json(json.loads(envelope.data))
        elif envelope.serializer.startswith("msgpack") and envelope.data[:1] == _TAG_MSGPACK:
            # The faithful msgpack body after its tag byte; its extension types (classes it
            # would import) are shown as placeholders, not rebuilt.
            text = pretty_json(msgspec.msgpack.decode(envelope.data[1:], ext_hook=_ext))
        else:
            return f"<{len(envelope.data)} bytes, serializer {envelope.serializer}: not previewed>"
    except (msgspec.DecodeError, ValueError, TypeError):
        return f"<{len(envelope.data)} bytes, serializer {envelope.serializer}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ext(code: int, data: memoryview) -> str:
    return f"<object ({len(data)} bytes)>"


def timeline(
    start: dt.datetime | None, rows: list[FlowRun | TaskRun], now: dt.datetime
) -> list[dict[str, Any]]:
    """Bars of a Gantt chart: each run's offset and width in percent of the whole span."""
    started = [r for r in rows if r.start_time is not None]
    if not started:
        return []
    times = [r.start_time for r in started if r.start_time is not None]
    first = min([*times, start] if start is not None else times)
    last = max((r.end_time or now) for r in started)
    span = max((last - first).total_seconds(), 1e-3)
    bars = []
    for run in started:
        assert run.start_time is not None
        begin = (run.start_time - first).total_seconds()
        length = ((run.end_time or now) - run.start_time).total_seconds()
        state = run.state_type.value if run.state_type else "PENDING"
        bars.append(
            {
                "run": run,
                "left": round(100 * begin / span, 3),
                "width": round(max(100 * length / span, 0.4), 3),
                "colour": STATE_COLOURS.get(state, "#999"),
                "is_flow": isinstance(run, FlowRun),
            }
        )
    return bars
