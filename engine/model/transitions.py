"""Transition decisions: the next state of a run after an attempt, a cache lookup or its inputs.

Pure functions of states and numbers (no loop, no thread, no database): orchestration asks them
what happens next and records the answer; every rule is unit-testable on its own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from millstream._engine.exceptions import Abort, UpstreamTaskError
from millstream._engine.model.states import (
    AwaitingRetry,
    Cancelled,
    Completed,
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

HookKind = Literal["on_completion", "on_failure", "on_crashed", "on_cancellation"]


def attempt_state(run_count: int, *, flow: bool = False) -> State:
    """The state an attempt starts in: Running the first time, Retrying after that for a task;
    always Running for a flow (its retry shows as AwaitingRetry, as in Prefect 3.9.1)."""
    return State(type=_RUNNING, name="Running" if run_count == 1 or flow else "Retrying")


def waits_before_retry(delays: float | list[float], flow: bool) -> bool:
    """Whether a retry is recorded as AwaitingRetry first: always for a flow; for a task only
    when a retry delay is configured (Prefect goes straight to Retrying otherwise)."""
    return flow or bool(delays)


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
    return Cancelled(message="Flow run was cancelled.")  # Prefect's wording


def hook_kind(state: State, *, flow: bool) -> HookKind | None:
    """Which hooks a final state fires: a returned Cancelled fires none and a returned
    Cancelling fires a flow's on_cancellation (both as in Prefect 3.9.1); for a task, Crashed
    fires on_failure, for a flow on_crashed."""
    if state.type is _COMPLETED:
        return "on_completion"
    if state.type is _FAILED:
        return "on_failure"
    if state.type is StateType.CRASHED:
        return "on_crashed" if flow else "on_failure"
    if flow and state.type is StateType.CANCELLING:
        return "on_cancellation"
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


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set of only states (what Prefect aggregates; not dicts)."""
    if type(value) not in (list, tuple, set) or not value:
        return False
    return all(isinstance(v, State) for v in value)


def final_from_states(states: Sequence[State], data: Any) -> State:
    """A run's final state from the states it returned (Prefect's aggregate rule): Completed
    when all completed, else Cancelled if any was, else Paused if any was, else Failed; the
    message counts them as Prefect's does and ``data`` is what was returned."""
    total = len(states)
    counts: dict[StateType, int] = {}
    for s in states:
        counts[s.type] = counts.get(s.type, 0) + 1
    if counts.get(_COMPLETED, 0) == total:
        return Completed(message="All states completed.", data=data)
    cancelled = counts.get(StateType.CANCELLED, 0)
    if cancelled:
        return Cancelled(message=f"{cancelled}/{total} states cancelled.", data=data)
    paused = counts.get(StateType.PAUSED, 0)
    if paused:
        return State(type=StateType.PAUSED, message=f"{paused}/{total} states paused.", data=data)
    failed = counts.get(_FAILED, 0) + counts.get(StateType.CRASHED, 0)
    if failed:
        return Failed(message=f"{failed}/{total} states failed.", data=data)
    not_final = sum(1 for s in states if not s.is_final())
    if not_final:
        return Failed(message=f"{not_final}/{total} states are not final.", data=data)
    shown = ", ".join(f"{t.value!r}={n}" for t, n in counts.items())
    return Failed(message=f"Given states: total={total}, {shown}", data=data)


# States a running run cannot move to (Prefect's server refuses them with Abort).
_NOT_PROPOSABLE = frozenset({StateType.PENDING, StateType.RUNNING, StateType.SCHEDULED})


def _refused(state: State) -> State:
    message = f"This run is in a RUNNING state and cannot transition to a {state.type.value} state."
    return Failed(message=message, data=Abort(message))


def final_from_return(value: Any) -> State:
    """A run's final state from what its body returned (futures already replaced by their
    states), by Prefect's rules: a state made by hand (of no run) is the final state as given;
    a run's state, or a non-empty list/tuple/set of states, is aggregated
    (``final_from_states``) with the returned value as the data; anything else completes."""
    if isinstance(value, State):
        details = value.state_details
        if details.flow_run_id is None and details.task_run_id is None:
            return value if value.type not in _NOT_PROPOSABLE else _refused(value)
        return final_from_states([value], value)
    if is_state_iterable(value):
        return final_from_states(list(value), value)
    return Completed(data=value)
