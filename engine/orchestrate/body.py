"""Calling a run's body: awaited, or a sync body through its executor, under its timeout; what
it returned or raised becomes a state."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.threads import call_with_timeout
from millstream._engine.exceptions import FlowRunTimeoutError, Pause, TaskRunTimeoutError
from millstream._engine.model import transitions
from millstream._engine.model.spec import FlowSpec, TaskSpec
from millstream._engine.model.states import (
    State,
    StateType,
    crashed_from_exception,
    failed_from_exception,
    timed_out,
)
from millstream._engine.orchestrate import cancellation
from millstream._engine.orchestrate.inputs import engine_future_of, has_futures, is_future
from millstream._engine.orchestrate.scheduler import RunGroup

_COMPLETED = StateType.COMPLETED


def call_kw(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)``: executors take positional arguments only."""
    return fn(*args, **kwargs)


async def call_body(
    spec: TaskSpec | FlowSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    executor: Executor | None,
    error: type[TaskRunTimeoutError] | type[FlowRunTimeoutError],
) -> Any:
    """The body's return value (raises what the body raised; ``error`` on timeout)."""
    if executor is not None and executor.remote:  # a process pool, Dask: sync or async body
        from millstream._engine.orchestrate.remote import call_remote

        return await call_remote(executor, spec, args, kwargs, error)  # type: ignore[arg-type]
    timeout = spec.timeout_seconds
    if spec.is_async:
        body = spec.fn(*args, **kwargs)
        return await (body if timeout is None else with_timeout(body, timeout, error))
    if timeout is None:
        assert executor is not None
        if kwargs:
            value = await executor.run(call_kw, spec.fn, args, kwargs)
        else:
            value = await executor.run(spec.fn, *args)
    else:
        value = await call_with_timeout(spec.fn, args, kwargs, timeout, error)
    if inspect.isawaitable(value) and engine_future_of(value) is None:
        # A sync body that returns an async task's call (a coroutine): its value is the
        # result, as in Prefect.
        value = await value
    return value


async def with_timeout(
    awaitable: Any, seconds: float, error: type[TaskRunTimeoutError] | type[FlowRunTimeoutError]
) -> Any:
    """Await ``awaitable`` for at most ``seconds``; ``error`` when that time runs out."""
    try:
        async with asyncio.timeout(seconds) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise error(f"Scope timed out after {seconds:g} second(s).") from None
        raise


async def task_body_state(
    spec: TaskSpec, parameters: dict[str, Any], executor: Executor | None
) -> State:
    """Run a task body once; its value, exception or timeout as a state."""
    args, kwargs = spec.binder.call_args(parameters)
    try:
        value = await call_body(spec, args, kwargs, executor, TaskRunTimeoutError)
    except TaskRunTimeoutError as exc:
        return timed_out("Task run", spec.timeout_seconds or 0, exc)
    except Exception as exc:
        return failed_from_exception(exc, "Task run")
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return crashed_from_exception(exc, "Task run")
    if type(value) in _CONTAINERS or isinstance(value, State):
        # Returned states (or collections of them) decide the task's state, as in Prefect.
        return transitions.final_from_return(value)
    return State(type=_COMPLETED, name="Completed", data=value)


async def flow_body_state(
    spec: FlowSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    executor: Executor | None,
    group: RunGroup,
) -> State:
    """Run a flow body once, then wait for what it submitted; the outcome as a state."""
    try:
        try:
            value = await call_body(spec, args, kwargs, executor, FlowRunTimeoutError)
        except FlowRunTimeoutError:
            group.cancel_all()
            await asyncio.shield(group.wait_all())
            raise
        except (Exception, Pause):
            # The body failed (or suspended its run): what it submitted still runs to its end
            # (and is recorded).
            await group.wait_all()
            raise
        except BaseException:
            # Cancelled or interrupted: its submitted task runs are stopped with it.
            group.cancel_all()
            await asyncio.shield(group.wait_all())
            raise
        # Submitted task runs finish before the flow does, returned or not.
        await group.wait_all()
    except FlowRunTimeoutError as exc:
        return timed_out("Flow run", spec.timeout_seconds or 0, exc)
    except Exception as exc:
        return failed_from_exception(exc, "Flow run")
    except (asyncio.CancelledError, cancellation.FlowRunCancelled, Pause):
        raise
    except BaseException as exc:
        # KeyboardInterrupt, SystemExit: the run crashed. Returned (not raised) so that the
        # loop orchestrating it survives; the caller re-raises it from the Crashed state.
        return crashed_from_exception(exc, "Flow run")
    return final_state_from_return(value)


def final_state_from_return(value: Any) -> State:
    """A flow's final state from what its body returned: the futures in it (in lists, tuples,
    sets and dicts, at any depth, as Prefect resolves them) stand for their states, then
    ``model.transitions`` decides."""
    if type(value) in _CONTAINERS and value and not has_futures(value, is_future):
        # Nothing to resolve: the value itself (no copy of a large returned collection).
        return transitions.final_from_return(value)
    return transitions.final_from_return(_futures_to_states(value, 0))


def _futures_to_states(value: Any, depth: int) -> Any:
    engine_future = engine_future_of(value)
    if engine_future is not None:
        return engine_future.state
    kind = type(value)
    if depth > 8 or kind not in _CONTAINERS or not value:
        return value
    if kind is dict:
        return {k: _futures_to_states(v, depth + 1) for k, v in value.items()}
    return kind(_futures_to_states(v, depth + 1) for v in value)


_CONTAINERS = frozenset({list, tuple, set, dict})
