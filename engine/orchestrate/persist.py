"""What a finished run keeps of its result: encoded and stored when it must be persisted (asked
for, or cached), journaled for recovery when small, or nothing."""

from __future__ import annotations

from typing import Any

from millstream._engine.model import transitions
from millstream._engine.model.spec import FlowSpec, TaskSpec
from millstream._engine.model.states import (
    ResultLoader,
    State,
    failed_from_exception,
    state_result,
)
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.results.blocks import default_results_dir
from millstream._engine.results.refs import StoredResult, journal, persist
from millstream._engine.settings import get_current_settings


def settings_of(flow_ctx: ctxmod.FlowRunContext | None) -> Any:
    """The settings a run works with: its flow run's, else the current ones."""
    if flow_ctx is not None and flow_ctx.settings is not None:
        return flow_ctx.settings
    return get_current_settings()


def holds_states(data: Any) -> bool:
    """A run that returned states (of futures): not a plain value to store or replay."""
    return isinstance(data, State) or transitions.is_state_iterable(data)


def journal_of(state: State) -> bytes | None:
    """The run's result as recorded for recovery (None when it is not a plain small value)."""
    data = state.data
    if holds_states(data):
        return None
    if isinstance(data, ResultLoader):
        return data.blob if isinstance(data, StoredResult) else None
    return journal(data)


def persist_result(
    spec: TaskSpec | FlowSpec,
    state: State,
    parameters: dict[str, Any],
    flow_ctx: ctxmod.FlowRunContext | None,
    *,
    kind: str,
) -> tuple[State, bytes | None]:
    """Encode (and store) a completed run's result; a value that cannot be stored fails the
    run, saying why (``kind``: "Task run" or "Flow run")."""
    settings = settings_of(flow_ctx)
    serializer, storage = spec.result_serializer, spec.result_storage
    storage_key = spec.result_storage_key if isinstance(spec, TaskSpec) else None
    if isinstance(spec, TaskSpec) and flow_ctx is not None:
        # As in Prefect, a task stores its result where (and how) its flow does unless told.
        serializer = serializer or flow_ctx.spec.result_serializer
        storage = storage if storage is not None else flow_ctx.spec.result_storage
    try:
        blob, used = persist(
            state_result(state),
            serializer=serializer or settings.results.default_serializer,
            storage=storage,
            storage_key=storage_key,
            parameters=parameters,
            inline_max_bytes=settings.results.inline_max_bytes,
            default_dir=default_results_dir(settings),
            pickle_fallback=settings.results.pickle_fallback,
        )
    except Exception as exc:  # SerializationError, StorageKeyError, OSError: nothing written
        return failed_from_exception(exc, kind), None
    if not spec.cache_result_in_memory:
        state.data = StoredResult(blob, used)
    return state, blob
