"""Run contexts and Prefect's context API: ``FlowRunContext``, ``TaskRunContext``,
``get_run_context``, ``tags``, ``ContextModel``, ``SettingsContext``, ``serialize_context``,
``hydrated_context``."""

from millstream._contexts import (
    ContextModel,
    SettingsContext,
    TagsContext,
    get_settings_context,
    hydrated_context,
    serialize_context,
)
from millstream._engine.orchestrate.context import (
    FlowRunContext,
    RunContext,
    TaskRunContext,
    get_run_context,
    tags,
)

# Prefect 2's name of the flow run context, still exported by Prefect 3.
EngineContext = FlowRunContext

__all__ = [
    "ContextModel",
    "EngineContext",
    "FlowRunContext",
    "RunContext",
    "SettingsContext",
    "TagsContext",
    "TaskRunContext",
    "get_run_context",
    "get_settings_context",
    "hydrated_context",
    "serialize_context",
    "tags",
]
