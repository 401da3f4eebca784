"""The one logging configuration: levels, format and the handlers, from the settings."""

from __future__ import annotations

import logging
import sys

from millstream._engine.logs.handlers import _capture, _console
from millstream._engine.logs.render import (
    ConsoleRenderer,
    _json_renderer,
    _state,
    console_colour,
)
from millstream._engine.logs.sink import _sink
from millstream._engine.logs.targets import ROOT
from millstream._engine.settings import get_current_settings

# -- configuration ------------------------------------------------------------------------------


def configure() -> None:
    """Apply the logging settings (``MILLSTREAM_LOGGING_LEVEL``, ``MILLSTREAM_LOGGING_FORMAT``).

    Cheap when nothing changed; the engine calls it when a top-level flow run starts.
    """
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
        renderer = _json_renderer() if json_lines else ConsoleRenderer(console_colour(sys.stderr))
        with _sink.lock:  # not in the middle of a batch
            _state.renderer, _state.json_lines = renderer, json_lines
        _state.configured = wanted
