"""Millstream's public API: Prefect 3's SDK names, run by an embedded engine on one SQLite file.

Change ``from prefect import flow, task`` to ``from sdk import flow, task``.
"""

from typing import Any

from engine.context import tags
from engine.logs import get_run_logger
from engine.scheduler import allow_failure, quote, unmapped
from engine.states import State
from engine.transactions import Transaction
from sdk import _refusals
from sdk.flows import Flow, flow
from sdk.futures import PrefectFuture, as_completed, wait
from sdk.tasks import Task, task

# Importing a Prefect module Millstream does not offer says so (and what to use instead).
_refusals.install()

__all__ = [
    "Flow",
    "PrefectFuture",
    "State",
    "Task",
    "Transaction",
    "allow_failure",
    "apause_flow_run",
    "arecover",
    "aresume_flow_run",
    "as_completed",
    "aserve",
    "asuspend_flow_run",
    "deploy",
    "flow",
    "get_client",
    "get_run_logger",
    "pause_flow_run",
    "quote",
    "recover",
    "resume_flow_run",
    "serve",
    "suspend_flow_run",
    "tags",
    "task",
    "unmapped",
    "wait",
]

# Serving, the client, pausing and recovery are imported when first used: `import sdk` stays
# quick for scripts that only run flows.
_LAZY = {
    "apause_flow_run": "sdk.flow_runs",
    "arecover": "sdk.recovery",
    "aresume_flow_run": "sdk.flow_runs",
    "aserve": "sdk.deployments",
    "asuspend_flow_run": "sdk.flow_runs",
    "deploy": "sdk.deployments",
    "get_client": "sdk.client.orchestration",
    "pause_flow_run": "sdk.flow_runs",
    "recover": "sdk.recovery",
    "resume_flow_run": "sdk.flow_runs",
    "serve": "sdk.deployments",
    "suspend_flow_run": "sdk.flow_runs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
