"""Console lines: coloured levels and states on a terminal only; JSON lines untouched."""

from __future__ import annotations

import io
import time

from millstream._engine.logs.render import ConsoleRenderer, console_colour


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_levels_and_states_are_coloured_on_a_terminal():
    line = ConsoleRenderer(colour=True).line(
        time.time(), "ERROR  ", "Task run 'x-0'", "Finished in state Failed('boom')", None, None
    )
    assert "\x1b[31mERROR  \x1b[0m" in line and "\x1b[31mFailed\x1b[0m('boom')" in line
    plain = ConsoleRenderer().line(
        time.time(), "ERROR  ", "Task run 'x-0'", "Finished in state Failed('boom')", None, None
    )
    assert "\x1b[" not in plain


def test_colour_only_for_a_terminal_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("TERM", raising=False)
    assert console_colour(_Tty()) is True
    assert console_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert console_colour(_Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert console_colour(_Tty()) is False
