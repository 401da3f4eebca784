"""Pausing and suspending flow runs, durably: the pause is a recorded state, the resume is a
recorded state carrying the run input, and a run re-executed after a crash or a suspension
passes the pauses it was already resumed from (matched by pause key, as Prefect does).

In-process: a paused run waits on a wake-up that a resume in this process fires at once; a
resume from another process is seen at the next poll. A suspended run leaves its process
(``Pause`` signal) and is continued, when resumed, by a worker or ``recover``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from millstream._engine.exceptions import FlowPauseTimeout, Pause
from millstream._engine.limits.waiters import Notifier, notifier_for
from millstream._engine.model.states import Paused, State, StateType, Suspended
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.store import Store

RESUMING = "Resuming"

# Pauses seen so far by each attempt of each run in this process: the default pause key is
# the pause's position in its attempt (so a re-execution meets the same keys in order).
_counters: dict[tuple[uuid.UUID, int], int] = {}


def pause_notifier(store: Store) -> Notifier:
    """Woken when a run of ``store`` is resumed in this process."""
    return notifier_for(store.path.with_name(store.path.name + "#pauses"))


def next_pause_key(flow_ctx: ctxmod.FlowRunContext) -> str:
    """The default key of the next pause of the running attempt: ``"1"``, ``"2"``, ..."""
    run = flow_ctx.flow_run
    slot = (run.id, run.run_count)
    if len(_counters) > 4096:
        _counters.clear()  # keys of long-gone attempts: only the running ones matter
    _counters[slot] = _counters.get(slot, 0) + 1
    return str(_counters[slot])


async def resumed_earlier(store: Store, run_id: uuid.UUID, key: str) -> State | None:
    """The Resuming state that answered an earlier pause with ``key``, or None."""
    paused = False
    for state in await store.read_flow_run_states(run_id):
        if state.type is StateType.PAUSED and state.state_details.pause_key == key:
            paused = True
        elif paused and state.name == RESUMING and state.state_details.pause_key == key:
            return state
    return None


async def _record(flow_ctx: ctxmod.FlowRunContext, state: State) -> None:
    run = flow_ctx.flow_run
    state.state_details.flow_run_id = run.id
    run.state = state
    flow_ctx.store.put_flow_run_state(run, state)
    # Durable before anyone is told: another process may resume it the next moment.
    await flow_ctx.store.flush()


async def _stop(
    flow_ctx: ctxmod.FlowRunContext,
    make: Callable[..., State],
    timeout: float | None,
    key: str | None,
    wants_input: bool,
) -> tuple[State, bool]:
    """``(the Resuming state, True)`` when the run was resumed from this pause key earlier;
    else ``(the Paused or Suspended state it now records, made by make, False)``."""
    key = key or next_pause_key(flow_ctx)
    earlier = await resumed_earlier(flow_ctx.store, flow_ctx.flow_run.id, key)
    if earlier is not None:
        return earlier, True
    stopped = make(timeout_seconds=timeout, pause_key=key)
    if wants_input:
        stopped.state_details.run_input_keyset = {"response": f"paused-{key}-response"}
    await _record(flow_ctx, stopped)
    return stopped, False


async def pause_here(
    flow_ctx: ctxmod.FlowRunContext,
    timeout: float,
    poll_interval: float,
    key: str | None,
    wants_input: bool,
) -> State:
    """Pause the running flow run until it is resumed; the Resuming state (its run input in
    ``state_details.run_input_keyset``). ``FlowPauseTimeout`` after ``timeout`` seconds."""
    state, resumed = await _stop(flow_ctx, Paused, timeout, key, wants_input)
    if resumed:
        return state
    state = await wait_while_paused(flow_ctx.store, flow_ctx.flow_run.id, timeout, poll_interval)
    flow_ctx.flow_run.state = state
    return state


async def suspend_here(
    flow_ctx: ctxmod.FlowRunContext, timeout: float | None, key: str | None, wants_input: bool
) -> State:
    """Suspend the running flow run: record Suspended and leave the process (``Pause``); when
    the run is re-executed after its resume, the Resuming state instead."""
    state, resumed = await _stop(flow_ctx, Suspended, timeout, key, wants_input)
    if resumed:
        return state
    raise Pause(f"Flow run {flow_ctx.flow_run.id} was suspended", state=state)


async def wait_while_paused(
    store: Store, run_id: uuid.UUID, timeout: float, poll_interval: float
) -> State:
    """Wait until the run leaves Paused (a resume here wakes it at once; elsewhere: the next
    poll); ``FlowPauseTimeout`` after ``timeout`` seconds."""
    import asyncio

    notifier = pause_notifier(store)
    deadline = time.monotonic() + timeout
    while True:
        generation = notifier.generation()
        run = await store.read_flow_run(run_id)
        if run.state is not None and run.state.type is not StateType.PAUSED:
            return run.state
        left = deadline - time.monotonic()
        if left <= 0:
            raise FlowPauseTimeout(f"Flow run {run_id} was not resumed within {timeout:g} seconds")
        await notifier.wait_async(generation, min(poll_interval, left))
        await asyncio.sleep(0)


def input_of(state: State) -> Any:
    """The run input a Resuming state carries (decoded JSON), or None."""
    import msgspec

    raw = (state.state_details.run_input_keyset or {}).get("run_input")
    return msgspec.json.decode(raw) if raw else None
