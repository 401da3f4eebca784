"""Changing a flow run's state from outside the process running it: cancel, pause, resume.

Each change is one conditional store write (applied only if the run is still in an expected
state) that also appends the new state to the run's history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from millstream._engine.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from millstream._engine.model.states import Cancelled, Cancelling, State, StateType
from millstream._engine.store import Store


async def change_state(
    store: Store, run_id: uuid.UUID, state: State, from_types: Iterable[StateType]
) -> bool:
    """Move a run to ``state`` if it is in one of ``from_types``; durable when it returns."""
    return await store.set_flow_run_state_if(run_id, state, list(from_types))


async def cancel_flow_run(store: Store, flow_run_id: uuid.UUID | str) -> State:
    """Cancel a flow run: at once if it has not started, else ask its process to stop it.

    Returns the state it was put in (Cancelled or Cancelling), or its final state if it had
    already finished. ``ObjectNotFound`` for an unknown id.
    """
    run = await store.read_flow_run(flow_run_id)
    cancelled = Cancelled(message="Cancelled before it started.")
    if await change_state(store, run.id, cancelled, [StateType.SCHEDULED]):
        return cancelled
    cancelling = Cancelling(message="Cancellation requested.")
    live = [StateType.PENDING, StateType.RUNNING, StateType.PAUSED]
    if await change_state(store, run.id, cancelling, live):
        return cancelling
    current = await store.read_flow_run(run.id)
    if current.state is None:
        raise ObjectNotFound(f"Flow run {run.id} has no state")
    return current.state


async def resume_flow_run(
    store: Store, flow_run_id: uuid.UUID | str, run_input: dict[str, object] | None = None
) -> None:
    """Resume a paused flow run (in whichever process waits for it), or re-queue a suspended
    one (a worker serving its deployment, or ``recover``, continues it)."""
    import msgspec

    from millstream._engine.model.states import Running, Scheduled
    from millstream._engine.orchestrate.pauses import RESUMING, pause_notifier

    if run_input is not None and not isinstance(run_input, dict):
        raise TypeError(f"run_input must be a dict, got {type(run_input).__name__}")
    run = await store.read_flow_run(flow_run_id)
    paused = run.state
    if paused is None or paused.type is not StateType.PAUSED:
        state = paused.name if paused is not None else "no state"
        raise NotPausedError(f"Cannot resume a run that isn't paused! ({run.id} is {state})")
    _check_pause_timeout(run.id, paused)
    suspended = paused.name == "Suspended"
    resuming = (Scheduled if suspended else Running)(name=RESUMING, message="Resumed on request.")
    resuming.state_details.pause_key = paused.state_details.pause_key
    if run_input is not None:
        resuming.state_details.run_input_keyset = {
            "run_input": msgspec.json.encode(run_input).decode()
        }
    elif paused.state_details.run_input_keyset:
        raise RuntimeError(f"Cannot resume this run: flow run {run.id} waits for run_input")
    if suspended:
        changed = store.requeue_suspended(run.id, resuming)
    else:
        changed = await change_state(store, run.id, resuming, [StateType.PAUSED])
    if not changed:
        raise NotPausedError(f"Cannot resume a run that isn't paused! ({run.id})")
    pause_notifier(store).notify()
    if suspended:
        from millstream._engine.serve.worker import notify

        notify()


def _check_pause_timeout(run_id: uuid.UUID, paused: State) -> None:
    import datetime as dt

    expires = paused.state_details.pause_timeout
    if expires is not None and expires < dt.datetime.now(dt.UTC):
        raise FlowPauseTimeout(
            f"Flow run can no longer be resumed: {run_id} was paused until {expires}"
        )


async def wait_while_paused(
    store: Store, flow_run_id: uuid.UUID, timeout: float, poll_interval: float
) -> State:
    """Wait until the run leaves Paused (resumed or cancelled); ``FlowPauseTimeout`` after
    ``timeout`` seconds. A resume in this process wakes it at once."""
    from millstream._engine.orchestrate.pauses import wait_while_paused as wait

    return await wait(store, flow_run_id, timeout, poll_interval)
