"""Pausing, suspending and resuming flow runs, durable sleep, and waiting for a flow run.

``pause_flow_run`` keeps the run in its process until ``resume_flow_run`` (from anywhere);
``suspend_flow_run`` records the run Suspended and leaves the process: once resumed, a worker
serving its deployment (or ``recover`` for a run without one) runs it again, reusing the
results of its completed task runs, and the ``suspend_flow_run`` call it had stopped at returns
(with the run input). A paused run whose process died is continued the same way once resumed.
``sleep`` is a Millstream extension: a durable sleep whose wake-up time is recorded, so a run
recovered after a crash sleeps only for the time left.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec

from millstream._engine.exceptions import FlowRunWaitTimeout
from millstream._engine.model.records import FlowRun
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate import pauses
from millstream._engine.serve import control
from millstream._engine.settings import get_current_settings
from millstream._engine.store import Store, get_store
from millstream._sync import dispatch


def _current_flow_run(what: str) -> ctxmod.FlowRunContext:
    if ctxmod.task_run_var.get() is not None:
        raise RuntimeError(f"Cannot {what} task runs.")
    ctx = ctxmod.flow_run_var.get()
    if ctx is None:
        raise RuntimeError(f"Flow runs can only be {what.rstrip('e')}ed from within a flow run.")
    return ctx


def _loaded_input(wait_for_input: Any, state: Any) -> Any:
    """What a pause returns: the run input as ``wait_for_input`` (None when it waits for none)."""
    if wait_for_input is None:
        return None
    given = pauses.input_of(state)
    if wait_for_input is dict:
        # Prefect's form {"value": {...}}, or the dict itself.
        if isinstance(given, dict) and set(given) == {"value"}:
            return given["value"]
        return given if given is not None else {}
    if _is_pydantic_model(wait_for_input) or not _msgspec_can_build(wait_for_input):
        from millstream.input.run_input import load

        return load(wait_for_input, given)
    if isinstance(given, dict) and set(given) == {"value"}:
        given = given["value"]
    return msgspec.convert(given, wait_for_input)


def _is_pydantic_model(type_: Any) -> bool:
    return isinstance(type_, type) and any(
        c.__module__.startswith("pydantic") and c.__name__ == "BaseModel" for c in type_.__mro__
    )


def _msgspec_can_build(type_: Any) -> bool:
    try:
        msgspec.inspect.type_info(type_)
    except Exception:
        return False
    return True


# -- pause --------------------------------------------------------------------------------------
async def apause_flow_run(
    wait_for_input: Any = None,
    timeout: float = 3600,
    poll_interval: float = 10,
    key: str | None = None,
) -> Any:
    """Pause the current flow run until ``resume_flow_run`` (or ``timeout`` → the flow fails).

    A resume in this process wakes it at once; one from another process is seen within
    ``poll_interval`` seconds. With ``wait_for_input`` (a ``RunInput`` subclass, a pydantic
    model, ``dict`` or a type msgspec builds), returns the ``run_input`` given to
    ``resume_flow_run``, as that type.
    """
    ctx = _current_flow_run("pause")
    if timeout <= 0 or poll_interval <= 0:
        raise ValueError(
            f"timeout and poll_interval must be positive, got {timeout!r} and {poll_interval!r}"
        )
    state = await pauses.pause_here(ctx, timeout, poll_interval, key, wait_for_input is not None)
    return _loaded_input(wait_for_input, state)


# Sync-compatible (the one bridge, ``dispatch``): awaitable in async code, blocking in sync code.
pause_flow_run = dispatch(apause_flow_run)


# -- suspend ------------------------------------------------------------------------------------
async def asuspend_flow_run(
    wait_for_input: Any = None,
    flow_run_id: uuid.UUID | None = None,
    timeout: float | None = 3600,
    key: str | None = None,
    client: Any = None,
) -> Any:
    """Suspend the current flow run: it is recorded Suspended and leaves this process (the
    flow call returns its Suspended state, or raises ``PausedRun``). Resumed with
    ``resume_flow_run``, it runs again where a worker or ``recover`` picks it up; this call
    then returns (the run input, with ``wait_for_input``)."""
    if timeout is not None and timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number, got {timeout}")
    if flow_run_id is not None:
        from millstream._engine.exceptions import NotSupportedError

        raise NotSupportedError(
            "suspend_flow_run(flow_run_id=...): a run is suspended by its own code; to stop "
            "another run use get_client().cancel_flow_run(id)"
        )
    ctx = _current_flow_run("suspend")
    if ctx.flow_run.parent_flow_run_id is not None:
        raise RuntimeError("Cannot suspend subflow runs: suspend the top-level flow run.")
    state = await pauses.suspend_here(ctx, timeout, key, wait_for_input is not None)
    return _loaded_input(wait_for_input, state)


suspend_flow_run = dispatch(asuspend_flow_run)


# -- resume -------------------------------------------------------------------------------------
async def _store() -> Store:
    store = get_store(get_current_settings().database_path)
    await store.ensure_open()
    return store


async def aresume_flow_run(
    flow_run_id: uuid.UUID | str, run_input: dict[str, Any] | None = None
) -> None:
    """Resume a paused flow run (or re-queue a suspended one), handing it ``run_input``."""
    await control.resume_flow_run(await _store(), flow_run_id, run_input)


resume_flow_run = dispatch(aresume_flow_run)


# -- waiting for a flow run ---------------------------------------------------------------------
async def await_for_flow_run_impl(
    flow_run_id: uuid.UUID | str,
    timeout: float | None,
    poll_interval: float | None,
    log_states: bool,
) -> FlowRun:
    """The body of ``wait_for_flow_run``."""
    import logging

    from millstream._engine.serve.worker import finished

    store = await _store()
    interval = poll_interval or get_current_settings().serve.poll_interval
    deadline = None if timeout is None else time.monotonic() + timeout
    logger = logging.getLogger("millstream.flow_runs")
    seen = None
    with finished.listen() as woken:
        while True:
            woken.clear()
            run = await store.read_flow_run(flow_run_id)
            if log_states and run.state is not None and run.state.name != seen:
                seen = run.state.name
                logger.info("Flow run is in state %r", seen)
            if run.state is not None and run.state.is_final():
                return run
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise FlowRunWaitTimeout(
                    f"Flow run with ID {run.id} exceeded watch timeout of {timeout} seconds"
                )
            try:
                await asyncio.wait_for(
                    woken.wait(), interval if left is None else min(interval, left)
                )
            except TimeoutError:
                pass


async def wait_for_flow_run_async(
    flow_run_id: uuid.UUID | str,
    timeout: float | None = 10800,
    poll_interval: float | None = None,
    client: Any = None,
    log_states: bool = False,
) -> FlowRun:
    """Wait until a flow run is final and return it; ``FlowRunWaitTimeout`` after ``timeout``
    seconds. A run finished by a worker of this process is seen at once; elsewhere, within
    ``poll_interval`` (default ``MILLSTREAM_SERVE_POLL_INTERVAL``)."""
    return await await_for_flow_run_impl(flow_run_id, timeout, poll_interval, log_states)


wait_for_flow_run = dispatch(wait_for_flow_run_async)
wait_for_flow_run.__doc__ = wait_for_flow_run_async.__doc__


# -- durable sleep ------------------------------------------------------------------------------
_wake_at: Any = None


def _wake_time_task() -> Any:
    global _wake_at
    if _wake_at is None:
        from millstream.tasks import task

        @task(name="millstream-sleep", task_run_name="sleep-{seconds}s")
        async def wake_at(seconds: float) -> float:
            """When this sleep ends (seconds since the epoch), journaled with the flow run."""
            return time.time() + seconds

        _wake_at = wake_at
    return _wake_at


async def asleep(seconds: float) -> None:
    """Durable sleep (a Millstream extension): inside a flow run, the wake-up time is recorded
    (as a small task run) before sleeping, so a run recovered after a crash sleeps only for
    the time left. Outside a flow run it is ``asyncio.sleep``."""
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    ctx = ctxmod.flow_run_var.get()
    if ctx is None or ctxmod.task_run_var.get() is not None:
        await asyncio.sleep(seconds)
        return
    from millstream._engine.model.states import state_result
    from millstream._engine.orchestrate.task_run import run_task

    spec = _wake_time_task().spec
    state = await run_task(spec, {"seconds": float(seconds)}, executor=None)
    wake: float = state_result(state)
    await ctx.store.flush()  # the wake-up time is durable before the sleep
    await asyncio.sleep(max(0.0, wake - time.time()))


sleep = dispatch(asleep)


__all__ = [
    "apause_flow_run",
    "aresume_flow_run",
    "asleep",
    "asuspend_flow_run",
    "pause_flow_run",
    "resume_flow_run",
    "sleep",
    "suspend_flow_run",
    "wait_for_flow_run",
    "wait_for_flow_run_async",
]
