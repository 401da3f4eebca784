"""Pausing and resuming flow runs: ``pause_flow_run`` inside a flow, ``resume_flow_run`` from
anywhere (another process included), through the database."""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

import msgspec

from millstream._engine.exceptions import NotSupportedError
from millstream._engine.model.states import Paused
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.serve import control
from millstream._engine.settings import get_current_settings
from millstream._engine.store import get_store
from millstream._sync import in_async_context, run_sync


async def apause_flow_run(
    wait_for_input: Any = None,
    timeout: float = 3600,
    poll_interval: float = 10,
    key: str | None = None,
) -> Any:
    """Pause the current flow run until ``resume_flow_run`` (or ``timeout`` → the flow fails).

    With ``wait_for_input`` (``dict`` or a type msgspec can build from a dict), returns the
    ``run_input`` given to ``resume_flow_run``.
    """
    ctx = ctxmod.flow_run_var.get()
    if ctx is None:
        raise RuntimeError("pause_flow_run() can only be called inside a flow run")
    if timeout <= 0 or poll_interval <= 0:
        raise ValueError(
            f"timeout and poll_interval must be positive, got {timeout!r} and {poll_interval!r}"
        )
    run = ctx.flow_run
    paused = Paused(timeout_seconds=timeout, pause_key=key)
    paused.state_details.flow_run_id = run.id
    run.state = paused
    ctx.store.put_flow_run_state(run, paused)
    await ctx.store.flush()  # other processes must see it Paused before they can resume it
    state = await control.wait_while_paused(ctx.store, run.id, timeout, poll_interval)
    run.state = state
    if wait_for_input is None:
        return None
    keyset = state.state_details.run_input_keyset or {}
    raw = keyset.get("run_input")
    value = msgspec.json.decode(raw) if raw else {}
    return value if wait_for_input is dict else msgspec.convert(value, wait_for_input)


def pause_flow_run(
    wait_for_input: Any = None,
    timeout: float = 3600,
    poll_interval: float = 10,
    key: str | None = None,
) -> Any:
    """Pause the current flow run (in async code, returns a coroutine to await)."""
    # Prefect's sync-compatible rule: a sync flow's body blocks even if its thread runs a loop.
    if not in_async_context():
        return run_sync(
            lambda _executor: apause_flow_run(wait_for_input, timeout, poll_interval, key)
        )
    return apause_flow_run(wait_for_input, timeout, poll_interval, key)


async def aresume_flow_run(
    flow_run_id: uuid.UUID | str, run_input: dict[str, Any] | None = None
) -> None:
    """Resume a paused flow run, optionally handing it ``run_input``."""
    store = get_store(get_current_settings().database_path)
    await store.ensure_open()
    await control.resume_flow_run(store, flow_run_id, run_input)


def resume_flow_run(flow_run_id: uuid.UUID | str, run_input: dict[str, Any] | None = None) -> Any:
    """Resume a paused flow run (in async code, returns a coroutine to await)."""
    if not in_async_context():
        return run_sync(lambda _executor: aresume_flow_run(flow_run_id, run_input))
    return aresume_flow_run(flow_run_id, run_input)


def suspend_flow_run(*args: Any, **kwargs: Any) -> NoReturn:
    """Not available: suspending releases the process and needs a worker to restart the run;
    use ``pause_flow_run`` (the run waits in its process) or durable recovery."""
    raise NotSupportedError(
        "suspend_flow_run() is not part of the embedded engine; use pause_flow_run()"
    )


async def asuspend_flow_run(*args: Any, **kwargs: Any) -> NoReturn:
    """Not available (see ``suspend_flow_run``)."""
    suspend_flow_run()


__all__ = [
    "apause_flow_run",
    "aresume_flow_run",
    "asuspend_flow_run",
    "pause_flow_run",
    "resume_flow_run",
    "suspend_flow_run",
]
