"""Result records and stores under Prefect's names (``prefect.results``)."""

from __future__ import annotations

from typing import Any

from millstream._engine.orchestrate.context import flow_run_var, task_run_var
from millstream._engine.orchestrate.transactions import _current_result_store
from millstream._engine.results import resolve_serializer
from millstream._engine.results.records import (
    ResultRecord,
    ResultRecordMetadata,
    default_result_storage,
    default_serializer,
    default_storage_key_fn,
)
from millstream._engine.results.result_store import ResultStore
from millstream._engine.settings import get_current_settings

__all__ = [
    "DEFAULT_STORAGE_KEY_FN",
    "ResultRecord",
    "ResultRecordMetadata",
    "ResultStore",
    "get_default_persist_setting",
    "get_default_persist_setting_for_tasks",
    "get_default_result_serializer",
    "get_default_result_storage",
    "get_result_store",
    "resolve_result_storage",
    "resolve_serializer",
    "should_persist_result",
]

DEFAULT_STORAGE_KEY_FN = default_storage_key_fn


def get_default_result_storage() -> Any:
    """The storage results go to when nothing else is configured."""
    return default_result_storage()


def get_default_result_serializer() -> Any:
    """The serializer of the current settings."""
    return default_serializer()


def resolve_result_storage(result_storage: Any) -> Any:
    """A storage object for a directory path or a storage object."""
    return ResultStore(result_storage=result_storage).result_storage


def get_default_persist_setting() -> bool:
    """``results.persist_by_default`` of the current settings."""
    return bool(get_current_settings().results.persist_by_default)


def get_default_persist_setting_for_tasks() -> bool:
    """Whether tasks persist by default (the same setting as flows here)."""
    return get_default_persist_setting()


def should_persist_result() -> bool:
    """Whether the current run persists its result (its own choice, its flow's, or the
    setting)."""
    for ctx in (task_run_var.get(), flow_run_var.get()):
        choice = getattr(getattr(ctx, "spec", None), "persist_result", None)
        if choice is not None:
            return bool(choice)
    return get_default_persist_setting()


def get_result_store() -> ResultStore:
    """The result store of the current run: its result storage and serializer, else the
    defaults."""
    # The same store a transaction() opened here uses: the engine's rule.
    return _current_result_store()
