"""The current flow run, also from inside its tasks: ``from millstream.runtime import flow_run``.

Outside a flow run: the flow run named by ``MILLSTREAM__FLOW_RUN_ID`` (Prefect's
``PREFECT__FLOW_RUN_ID`` too) as recorded in the database; with none, ids and names are None,
``parameters`` is {}, ``tags`` is [], ``run_count`` is 0 and ``scheduled_start_time`` is now.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable
from typing import Any

from millstream._engine.model.records import FlowRun
from millstream._engine.orchestrate.context import FlowRunContext, flow_run_var, task_run_var
from millstream.runtime import _attribute, _run_lookup, _scheduled, _store

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


def _field(
    read: Callable[[FlowRunContext], Any],
    default: Any = None,
    recorded: Callable[[FlowRun], Any] | None = None,
) -> Callable[[], Any]:
    """A getter of one field of the current flow run; outside flow runs, of the flow run named
    by ``MILLSTREAM__FLOW_RUN_ID`` (or Prefect's ``PREFECT__FLOW_RUN_ID``) as recorded in the
    database (``recorded``), else ``default``."""

    def get() -> Any:
        ctx = flow_run_var.get()
        if ctx is not None:
            return read(ctx)
        if recorded is not None and task_run_var.get() is None:
            run = _env_run()
            if run is not None:
                return recorded(run)
        return default

    return get


_ENV_IDS = ("MILLSTREAM__FLOW_RUN_ID", "PREFECT__FLOW_RUN_ID")


def _env_id() -> str | None:
    """The flow run id the environment names (a process started for one run), if any."""
    for key in _ENV_IDS:
        value = os.environ.get(key)
        if value:
            return value
    return None


def _env_run() -> FlowRun | None:
    """The recorded flow run the environment names (None when it names none we know)."""
    run_id = _env_id()
    if run_id is None:
        return None
    try:
        key = uuid.UUID(run_id)
    except ValueError:
        return None
    from millstream._sync import run_sync

    store = _store()

    async def read() -> FlowRun | None:
        await store.ensure_open()
        return await store.read_flow_run_or_none(key)

    return run_sync(lambda _executor: read())


def _id() -> str | None:
    ctx = flow_run_var.get()
    if ctx is not None:
        return str(ctx.flow_run.id)
    task_ctx = task_run_var.get()  # a task run outside a flow has no flow run
    if task_ctx is not None:
        flow_run_id = task_ctx.task_run.flow_run_id
        return str(flow_run_id) if flow_run_id is not None else None
    return _env_id()  # outside runs: the run this process was started for, as Prefect


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
    "name": (str, _field(lambda c: c.flow_run.name, None, lambda r: r.name)),
    "flow_name": (str, _field(lambda c: c.flow_run.flow_name, None, lambda r: r.flow_name)),
    "flow_version": (
        str,
        _field(lambda c: c.flow_run.flow_version, None, lambda r: r.flow_version),
    ),
    # The bound parameters, defaults included (a copy: changing it changes nothing).
    "parameters": (dict, _field(lambda c: dict(c.parameters), {}, lambda r: dict(r.parameters))),
    "tags": (list, _field(lambda c: list(c.flow_run.tags), [], lambda r: list(r.tags))),
    "run_count": (int, _field(lambda c: c.flow_run.run_count, 0, lambda r: r.run_count)),
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
