"""States of flow and task runs: the State record, StateType, constructors and helpers."""

from millstream._engine.model.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateDetails,
    StateType,
    Suspended,
)
from millstream._engine.model.states import get_state_exception as _get_state_exception
from millstream._engine.model.states import raise_state_exception as _raise_state_exception
from millstream._state_groups import *  # noqa: F403  # StateGroup, is_state_iterable, Submitting
from millstream._sync import dispatch


async def aget_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (async form)."""
    return _get_state_exception(state)


async def araise_state_exception(state: State) -> None:
    """Raise the exception of a failed, crashed or cancelled state (async form)."""
    _raise_state_exception(state)


# Sync-compatible, as Prefect's: awaitable in async code, plain calls in sync code.
get_state_exception = dispatch(aget_state_exception)
raise_state_exception = dispatch(araise_state_exception)

__all__ = [
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "Suspended",
    "aget_state_exception",
    "araise_state_exception",
    "get_state_exception",
    "raise_state_exception",
]
