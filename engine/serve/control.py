"""Changing a flow run's state from outside the process running it: cancel, pause, resume.

Each change is one conditional store write (applied only if the run is still in an expected
state) that also appends the new state to the run's history.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable

from millstream._engine.exceptions import ObjectNotFound
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
    """Resume a paused flow run (in whichever process waits for it)."""
    import msgspec

    from millstream._engine.model.states import Running

    run = await store.read_flow_run(flow_run_id)
    resuming = Running(name="Resuming", message="Resumed on request.")
    if run_input is not None:
        if not isinstance(run_input, dict):
            raise TypeError(f"run_input must be a dict, got {type(run_input).__name__}")
        resuming.state_details.run_input_keyset = {
            "run_input": msgspec.json.encode(run_input).decode()
        }
    if not await change_state(store, run.id, resuming, [StateType.PAUSED]):
        state = run.state.name if run.state is not None else "no state"
        raise RuntimeError(f"Flow run {run.id} is not paused (it is {state}); cannot resume it")


async def wait_while_paused(
    store: Store, flow_run_id: uuid.UUID, timeout: float, poll_interval: float
) -> State:
    """Poll until the run leaves Paused (resumed or cancelled); ``FlowPauseTimeout`` after
    ``timeout`` seconds."""
    import time

    from millstream._engine.exceptions import FlowPauseTimeout

    deadline = time.monotonic() + timeout
    while True:
        await asyncio.sleep(min(poll_interval, max(0.0, deadline - time.monotonic())))
        run = await store.read_flow_run(flow_run_id)
        if run.state is not None and run.state.type is not StateType.PAUSED:
            return run.state
        if time.monotonic() >= deadline:
            raise FlowPauseTimeout(
                f"Flow run {flow_run_id} was not resumed within {timeout:g} seconds"
            )
