"""The current task run: ``from millstream.runtime import task_run``.

Outside a task run (also in a flow body): ids and names are None, ``parameters`` is {},
``tags`` is [] and ``run_count`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millstream._engine.orchestrate.context import TaskRunContext, task_run_var
from millstream.runtime import _attribute

__all__ = ["api_url", "id", "name", "parameters", "run_count", "tags", "task_name", "ui_url"]


def _field(read: Callable[[TaskRunContext], Any], default: Any = None) -> Callable[[], Any]:
    """A getter of one field of the current task run (``default`` outside task runs)."""

    def get() -> Any:
        ctx = task_run_var.get()
        return default if ctx is None else read(ctx)

    return get


def _none() -> None:
    return None  # no API server and no UI in an embedded engine


_VALUES: dict[str, tuple[type, Callable[[], Any]]] = {
    "id": (str, _field(lambda c: str(c.task_run.id))),
    "name": (str, _field(lambda c: c.task_run.name)),
    "task_name": (str, _field(lambda c: c.task_run.task_name)),
    # The bound parameters, defaults included (a copy: changing it changes nothing).
    "parameters": (dict, _field(lambda c: dict(c.parameters), {})),
    "tags": (list, _field(lambda c: list(c.task_run.tags), [])),
    # 1 on the first attempt, 2 on the first retry, ...
    "run_count": (int, _field(lambda c: c.task_run.run_count, 0)),
    "api_url": (str, _none),
    "ui_url": (str, _none),
}


def __getattr__(name: str) -> Any:
    return _attribute("task_run", name, _VALUES)


def __dir__() -> list[str]:
    return sorted(__all__)
