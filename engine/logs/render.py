"""Rendering for the console: Prefect's plain layout, or JSON lines through structlog."""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import msgspec

from millstream._engine.logs.targets import ROOT, Entry

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

    def __init__(self, colour: bool = False) -> None:
        self._millis = -1
        self._stamp = ""
        # On a terminal (and without NO_COLOR): levels and state names in colour.
        self.colour = colour

    def __call__(self, logger: Any, method_name: str, event_dict: dict[str, Any]) -> str:
        """Render one event (keys ``created``, ``level``, ``label``, ``event``, then extras)."""
        created: float = event_dict.pop("created")
        level: str = event_dict.pop("level")
        label: str = event_dict.pop("label")
        event: str = event_dict.pop("event")
        exception: str | None = event_dict.pop("exception", None)
        padded = _PADDED_BY_NAME.get(level) or level.ljust(7)
        return self.line(created, padded, label, event, exception, event_dict)

    def line(
        self,
        created: float,
        padded: str,
        label: str,
        event: str,
        exception: str | None,
        extra: Mapping[str, Any] | None,
    ) -> str:
        """The line itself, from its parts (``padded``: the level name padded to 7): the log
        thread calls this directly, with no event dict to build and take apart."""
        millis = int(created * 1000)
        if millis != self._millis:  # a flood logs many lines per millisecond: format once
            self._millis = millis
            second, rest = divmod(millis, 1000)
            self._stamp = time.strftime("%H:%M:%S", time.localtime(second)) + f".{rest:03d} | "
        if self.colour:
            padded = _LEVEL_COLOURED.get(padded, padded)
            event = _STATE_WORD.sub(_colour_state, event)
        line = f"{self._stamp}{padded} | {label} - {event}"
        if extra:
            line += " " + " ".join(
                f"{k}={v}" if type(v) is str else f"{k}={v!r}" for k, v in extra.items()
            )
        return f"{line}\n{exception}\n" if exception else line + "\n"


_PADDED_BY_NAME = {name: name.ljust(7) for name in _LEVEL_NAMES.values()}
_LEVEL_CODES = {"DEBUG": "90", "INFO": "36", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}
_LEVEL_COLOURED = {
    name.ljust(7): f"\x1b[{code}m{name.ljust(7)}\x1b[0m" for name, code in _LEVEL_CODES.items()
}
_STATE_CODES = {
    "Completed": "32",
    "Cached": "32",
    "Failed": "31",
    "Crashed": "1;31",
    "TimedOut": "31",
    "Cancelled": "90",
    "Paused": "35",
    "AwaitingRetry": "33",
    "Retrying": "33",
}
_STATE_WORD = re.compile(r"\b(" + "|".join(_STATE_CODES) + r")(?=\()")


def _colour_state(match: re.Match[str]) -> str:
    word = match[1]
    return f"\x1b[{_STATE_CODES[word]}m{word}\x1b[0m"


def console_colour(stream: Any) -> bool:
    """Whether console lines to ``stream`` are coloured: a terminal, no NO_COLOR, TERM not
    dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


# By level number, for the log thread's direct path.
_PADDED = {level: name.ljust(7) for level, name in _LEVEL_NAMES.items()}


def _padded(level: int) -> str:
    padded = _PADDED.get(level)
    return padded if padded is not None else _level_name(level).ljust(7)


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
    # Run lines (and Millstream's own, inside a run) are labelled with the run, as Prefect
    # does; other loggers' records keep their logger's name.
    label = target.label if target is not None and name.startswith(ROOT) else name
    if not extra and type(renderer) is ConsoleRenderer:
        # The default console: straight from the parts (an event dict costs more than the line).
        return renderer.line(created, _padded(level), label, message, exc_text, None)
    event = {
        "created": created,
        "level": _level_name(level),
        "label": label,
        "event": message,
    }
    if extra:
        event.update(extra)
    if exc_text:
        event["exception"] = exc_text
    return renderer(None, "", event)


# -- configuration ------------------------------------------------------------------------------
class _State:
    """What ``configure`` applied: the settings it saw and the console renderer."""

    def __init__(self) -> None:
        self.configured: tuple[str, str] | None = None
        self.renderer: Renderer = ConsoleRenderer()
        self.json_lines = False
        self.lock = threading.Lock()


_state = _State()
