"""The deployment of the current run: ``from sdk.runtime import deployment``.

None / {} outside a run started from a deployment (this version has no deployments yet, so
always, unless overridden through the environment).
"""

from __future__ import annotations

from typing import Any

from engine.context import flow_run_var
from sdk.runtime._env import override

__all__ = ["flow_run_id", "id", "name", "parameters", "version"]


def _value(name: str) -> Any:
    ctx = flow_run_var.get()
    dep = ctx.deployment if ctx is not None else None
    if name == "parameters":
        return dict(getattr(dep, "parameters", None) or {})
    if name == "flow_run_id":
        return str(ctx.flow_run.id) if ctx is not None and dep is not None else None
    if name in ("id", "name", "version"):
        value = getattr(dep, name, None) if dep is not None else None
        return str(value) if name == "id" and value is not None else value
    raise AttributeError(f"sdk.runtime.deployment has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    return override("deployment", name, _value(name))
