"""Millstream's public API: Prefect 3's SDK names, run by an embedded engine on one SQLite file.

Change ``from prefect import flow, task`` to ``from millstream import flow, task``.
"""

from typing import Any

from millstream import _refusals
from millstream import task_runners as _task_runners  # noqa: F401  (runners usable on their own)
from millstream._engine.logs import get_run_logger
from millstream._engine.model.states import State
from millstream._engine.orchestrate.annotations import allow_failure, quote, unmapped
from millstream._engine.orchestrate.context import tags
from millstream._engine.orchestrate.transactions import Transaction
from millstream._version import __version__
from millstream.flows import Flow, flow
from millstream.futures import PrefectFuture, as_completed, wait
from millstream.tasks import Task, task

# Importing a Prefect module Millstream does not offer says so (and what to use instead).
_refusals.install()
__all__ = [
    "Flow",
    "PrefectFuture",
    "State",
    "Task",
    "Transaction",
    "__version__",
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
    "sleep",
    "suspend_flow_run",
    "tags",
    "task",
    "unmapped",
    "wait",
]

# Serving, the client, pausing and recovery are imported when first used: `import sdk` stays
# quick for scripts that only run flows.
_LAZY = {
    "apause_flow_run": "millstream.flow_runs",
    "arecover": "millstream.recovery",
    "aresume_flow_run": "millstream.flow_runs",
    "aserve": "millstream.deployments",
    "asuspend_flow_run": "millstream.flow_runs",
    "deploy": "millstream.deployments",
    "get_client": "millstream.client.orchestration",
    "pause_flow_run": "millstream.flow_runs",
    "recover": "millstream.recovery",
    "resume_flow_run": "millstream.flow_runs",
    "serve": "millstream.deployments",
    "sleep": "millstream.flow_runs",
    "suspend_flow_run": "millstream.flow_runs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'millstream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
