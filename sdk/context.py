"""Run contexts: ``FlowRunContext``, ``TaskRunContext``, ``get_run_context``, ``tags``."""

from millstream._engine.orchestrate.context import (
    FlowRunContext,
    RunContext,
    TaskRunContext,
    get_run_context,
    tags,
)

__all__ = ["FlowRunContext", "RunContext", "TaskRunContext", "get_run_context", "tags"]
