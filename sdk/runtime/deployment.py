"""The deployment of the current run: ``from millstream.runtime import deployment``.

Set inside a run started from a deployment (a served run) and inside its subflows, and outside
runs for the flow run named by ``MILLSTREAM__FLOW_RUN_ID`` (or ``PREFECT__FLOW_RUN_ID``) when it
came from a deployment; otherwise the ids, name and version are None and ``parameters`` is {}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from millstream._engine.orchestrate.context import flow_run_var
from millstream.runtime import _attribute, _deployment_run

__all__ = ["flow_run_id", "id", "name", "parameters", "version"]


def _id() -> str | None:
    found = _deployment_run()
    return str(found[0].id) if found is not None else None


def _name() -> str | None:
    found = _deployment_run()
    return found[0].name if found is not None else None


def _version() -> str | None:
    found = _deployment_run()
    return found[0].version if found is not None else None


def _flow_run_id() -> str | None:
    # The current flow run's id (or the one the environment names), when it is (part of) a
    # deployment run.
    ctx = flow_run_var.get()
    if ctx is None:
        found = _deployment_run()
        return found[1] if found is not None else None
    return str(ctx.flow_run.id) if _deployment_run() is not None else None


def _parameters() -> dict[str, Any]:
    # The parameters of the deployment run (deployment defaults merged with those given).
    found = _deployment_run()
    return found[2] if found is not None else {}


_VALUES: dict[str, tuple[type, Callable[[], Any]]] = {
    "id": (str, _id),
    "name": (str, _name),
    "version": (str, _version),
    "flow_run_id": (str, _flow_run_id),
    "parameters": (dict, _parameters),
}


def __getattr__(name: str) -> Any:
    return _attribute("deployment", name, _VALUES)


def __dir__() -> list[str]:
    return sorted(__all__)
