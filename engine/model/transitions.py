"""Transition decisions: the next state of a run after an attempt, a cache lookup or its inputs.

Pure functions of states and numbers (no loop, no thread, no database): orchestration asks them
what happens next and records the answer; every rule is unit-testable on its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from millstream._engine.exceptions import UpstreamTaskError
from millstream._engine.model.states import (
    AwaitingRetry,
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    State,
    StateType,
    now,
    retry_delay,
)

_COMPLETED = StateType.COMPLETED
_FAILED = StateType.FAILED
_RUNNING = StateType.RUNNING

HookKind = Literal["on_completion", "on_failure", "on_crashed"]


def attempt_state(run_count: int) -> State:
    """The state an attempt starts in: Running the first time, Retrying after that."""
    return State(type=_RUNNING, name="Running" if run_count == 1 else "Retrying")


def may_retry(state: State, run_count: int, retries: int) -> bool:
    """Whether a finished attempt may be retried (before asking ``retry_condition_fn``)."""
    return state.type is _FAILED and run_count <= retries


def retry(
    state: State, run_count: int, delays: float | list[float], jitter: float | None
) -> tuple[float, State]:
    """The wait before the next attempt and the AwaitingRetry state to record meanwhile."""
    delay = retry_delay(delays, run_count, jitter)
    waiting = AwaitingRetry(
        scheduled_time=now() + dt.timedelta(seconds=delay), message=state.message
    )
    return delay, waiting


def upstream_not_ready(failed: Sequence[uuid.UUID]) -> State | None:
    """Pending "NotReady" when an upstream run did not complete (None when all did)."""
    if not failed:
        return None
    ids = ", ".join(repr(str(i)) for i in failed)
    message = f"Upstream task run {ids} did not reach a 'COMPLETED' state."
    return Pending(name="NotReady", message=message, data=UpstreamTaskError(message))


def cache_hit(data: Any, cache_key: str) -> State:
    """The state of a run answered from the cache: Completed, named Cached."""
    state = State(type=_COMPLETED, name="Cached", data=data)
    state.state_details.cache_key = cache_key
    return state


def reused(data: Any) -> State:
    """The state of a task run whose result an earlier attempt of its flow run recorded."""
    return State(
        type=_COMPLETED,
        name="Completed",
        message="Result recorded by an earlier attempt of this flow run",
        data=data,
    )


def validation_failed(exc: BaseException) -> State:
    """A flow run whose parameters failed validation (as Prefect words it)."""
    return Failed(
        message=f"Validation of flow parameters failed with error: {type(exc).__name__}: {exc}",
        data=exc,
    )


def cancelled_on_request() -> State:
    """A flow run stopped on request (client cancel, a worker shutting down)."""
    return Cancelled(message="Flow run was cancelled on request.")


def hook_kind(state: State, *, flow: bool) -> HookKind | None:
    """Which hooks a final state fires: a returned Cancelled fires none (as in Prefect); for a
    task, Crashed fires on_failure, for a flow on_crashed."""
    if state.type is _COMPLETED:
        return "on_completion"
    if state.type is _FAILED:
        return "on_failure"
    if state.type is StateType.CRASHED:
        return "on_crashed" if flow else "on_failure"
    return None


def should_persist(
    state: State, persist_result: bool | None, persist_by_default: bool, cache_key: str | None
) -> bool:
    """Whether a run's result is encoded and stored: asked for, the default, or cached."""
    if state.type is not _COMPLETED:
        return False
    if cache_key is not None:
        return True
    return persist_by_default if persist_result is None else persist_result


def final_from_states(states: Sequence[State], data: Any) -> State:
    """A flow's final state from the states it returned (Prefect's rules): Completed when all
    completed, else Cancelled / Crashed when all that did not are, else Failed."""
    bad = [s for s in states if s.type is not _COMPLETED]
    if not bad:
        return Completed(data=data)
    kinds = {s.type for s in bad}
    of = f"{len(bad)}/{len(states)}"
    if kinds <= {StateType.CANCELLED}:
        return Cancelled(message=f"{of} states cancelled.", data=data)
    if kinds == {StateType.CRASHED}:
        return Crashed(message=f"{of} states crashed.", data=data)
    if all(s.is_final() for s in bad):
        return Failed(message=f"{of} states failed.", data=data)
    return Failed(message=f"{of} states are not final.", data=data)


def final_from_return(value: Any, states_of: Iterable[State] | None, single: bool) -> State:
    """A flow's final state from what its body returned.

    ``states_of``: the states the return value stands for when it is a state, a future, or a
    non-empty collection of only those (orchestration extracts them: futures are its business);
    None for any other value, which completes the run with the value as its result.
    """
    if isinstance(value, State):
        return value
    if states_of is None:
        return Completed(data=value)
    states = list(states_of)
    return final_from_states(states, states[0] if single else states)
