"""Millstream's public API: Prefect 3's SDK names, run by an embedded engine on one SQLite file.

Change ``from prefect import flow, task`` to ``from sdk import flow, task``.
"""

from engine.context import tags
from engine.logs import get_run_logger
from engine.scheduler import allow_failure, quote, unmapped
from engine.states import State
from engine.transactions import Transaction
from sdk.client.orchestration import get_client
from sdk.deployments import aserve, deploy, serve
from sdk.flow_runs import (
    apause_flow_run,
    aresume_flow_run,
    asuspend_flow_run,
    pause_flow_run,
    resume_flow_run,
    suspend_flow_run,
)
from sdk.flows import Flow, flow
from sdk.futures import PrefectFuture, as_completed, wait
from sdk.recovery import arecover, recover
from sdk.tasks import Task, task

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
