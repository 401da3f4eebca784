"""The current flow run (also from inside its tasks): ``from sdk.runtime import flow_run``.

Outside a run: ids and names are None, ``parameters`` is {}, ``tags`` is [], ``run_count`` 0.
"""

from __future__ import annotations

from typing import Any

from engine.context import flow_run_var
from engine.states import now
from sdk.runtime._env import override

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


def _value(name: str) -> Any:
    ctx = flow_run_var.get()
    run = ctx.flow_run if ctx is not None else None
    if name == "id":
        return str(run.id) if run else None
    if name == "name":
        return run.name if run else None
    if name == "flow_name":
        return run.flow_name if run else None
    if name == "flow_version":
        return run.flow_version if run else None
    if name == "parameters":
        return dict(ctx.parameters) if ctx else {}
    if name == "tags":
        return list(run.tags) if run else []
    if name == "run_count":
        return run.run_count if run else 0
    if name == "scheduled_start_time":
        if run is None:
            return now()
        return run.expected_start_time or run.start_time or run.created or now()
    if name == "parent_flow_run_id":
        return str(run.parent_flow_run_id) if run and run.parent_flow_run_id else None
    if name == "root_flow_run_id":
        return str(run.root_flow_run_id) if run and run.root_flow_run_id else None
    if name == "parent_deployment_id":
        return None  # deployments do not exist yet in this version
    if name in ("api_url", "ui_url", "job_variables"):
        return None  # no API server, no UI, no work pools in an embedded engine
    raise AttributeError(f"sdk.runtime.flow_run has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return override("flow_run", name, _value(name))
