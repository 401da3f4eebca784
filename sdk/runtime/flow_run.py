"""The current flow run, also from inside its tasks: ``from millstream.runtime import flow_run``.

Outside a flow run: ids and names are None, ``parameters`` is {}, ``tags`` is [], ``run_count``
is 0 and ``scheduled_start_time`` is now.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from millstream._engine.orchestrate.context import FlowRunContext, flow_run_var, task_run_var
from millstream.runtime import _attribute, _run_lookup, _scheduled

__all__ = [
    "api_url",
    "flow_name",
    "flow_version",
    "id",
    "job_variables",
    "name",
    "parameters",
    "parent_deployment_id",
    "parent_flow_run_id",
    "root_flow_run_id",
    "run_count",
    "scheduled_start_time",
    "tags",
    "ui_url",
]


def _field(read: Callable[[FlowRunContext], Any], default: Any = None) -> Callable[[], Any]:
    """A getter of one field of the current flow run (``default`` outside flow runs)."""

    def get() -> Any:
        ctx = flow_run_var.get()
        return default if ctx is None else read(ctx)

    return get


def _id() -> str | None:
    ctx = flow_run_var.get()
    if ctx is not None:
        return str(ctx.flow_run.id)
    task_ctx = task_run_var.get()  # a task run outside a flow has no flow run
    if task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
        return str(task_ctx.task_run.flow_run_id)
    return None


def _text(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def _parent_deployment_id() -> str | None:
    # The deployment of the parent flow run, read from the database (subflows only).
    ctx = flow_run_var.get()
    if ctx is None or ctx.flow_run.parent_flow_run_id is None:
        return None
    row = _run_lookup(ctx.flow_run.parent_flow_run_id)
    return str(row[0]) if row is not None and row[0] is not None else None


def _none() -> None:
    return None  # no API server, no UI and no work pools in an embedded engine


_VALUES: dict[str, tuple[type, Callable[[], Any]]] = {
    "id": (str, _id),
    "name": (str, _field(lambda c: c.flow_run.name)),
    "flow_name": (str, _field(lambda c: c.flow_run.flow_name)),
    "flow_version": (str, _field(lambda c: c.flow_run.flow_version)),
    # The bound parameters, defaults included (a copy: changing it changes nothing).
    "parameters": (dict, _field(lambda c: dict(c.parameters), {})),
    "tags": (list, _field(lambda c: list(c.flow_run.tags), [])),
    "run_count": (int, _field(lambda c: c.flow_run.run_count, 0)),
    "scheduled_start_time": (dt.datetime, lambda: _scheduled(flow_run_var.get())),
    "parent_flow_run_id": (str, _field(lambda c: _text(c.flow_run.parent_flow_run_id))),
    "parent_deployment_id": (str, _parent_deployment_id),
    # A top-level run is its own root (as in Prefect).
    "root_flow_run_id": (str, _field(lambda c: str(c.flow_run.root_flow_run_id or c.flow_run.id))),
    "api_url": (str, _none),
    "ui_url": (str, _none),
    "job_variables": (dict, _none),
}


def __getattr__(name: str) -> Any:
    return _attribute("flow_run", name, _VALUES)


def __dir__() -> list[str]:
    return sorted(__all__)
