"""The attempt loop shared by task and flow runs: Running → body → retry while the model says so.

Each attempt is recorded as Running (Retrying after the first), runs the ``on_running`` hooks
and the body, and asks ``model.transitions`` whether a failed attempt is retried; a retried one
waits in AwaitingRetry for its delay. The final state of the last attempt is returned, not yet
recorded: what is kept of its result is the caller's business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from millstream._engine import clock, observe
from millstream._engine.model import transitions
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.spec import FlowSpec, TaskSpec
from millstream._engine.model.states import State
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate import lines
from millstream._engine.orchestrate.hooks import retry_allowed, run_hooks

Put = Callable[..., None]


def link(run: TaskRun | FlowRun, state: State) -> State:
    """Mark ``state`` as a state of ``run``."""
    if type(run) is TaskRun:
        state.state_details.task_run_id = run.id
    else:
        state.state_details.flow_run_id = run.id
    return state


async def run_attempts(
    run: TaskRun | FlowRun,
    spec: TaskSpec | FlowSpec,
    put: Put,
    attempt: Callable[..., Awaitable[State]],
    args: tuple[Any, ...],
    flow_ctx: ctxmod.FlowRunContext | None,
) -> State:
    """Run attempts of ``run`` (``attempt(*args)`` each) until one is not retried."""
    task_run = run if type(run) is TaskRun else None
    # The run's OpenTelemetry span (None, at one dict lookup, unless tracing is set up).
    traced = observe.start_run(run, spec)
    state: State | None = None
    try:
        while True:
            run.run_count += 1
            running = link(run, transitions.attempt_state(run.run_count, flow=task_run is None))
            if run.start_time is None:
                run.start_time = running.timestamp
            run.state = running
            put(run, running)
            if spec.hooks.on_running:
                await run_hooks(spec.hooks.on_running, (spec.owner, run, running), "on_running")
            if task_run is None and flow_ctx is not None:
                lines.flow_beginning(flow_ctx)
            state = link(run, await attempt(*args))
            retry = await _retry_of(run, task_run, spec, state)
            _say_failed(run, task_run, spec, state, retry, flow_ctx)
            if retry is None:
                return state
            await _wait_to_retry(run, task_run, spec, put, retry, traced)
    finally:
        if traced is not None:
            observe.end_run(traced, run, state)


async def _wait_to_retry(
    run: TaskRun | FlowRun,
    task_run: TaskRun | None,
    spec: TaskSpec | FlowSpec,
    put: Put,
    retry: tuple[float, State],
    traced: Any,
) -> None:
    """Record AwaitingRetry where Prefect does (a flow, or a task with a delay), then wait."""
    delay, waiting = retry
    if transitions.waits_before_retry(spec.retry_delays, task_run is None):
        link(run, waiting)
        run.state = waiting
        put(run, waiting)
    observe.retrying(traced, run, delay)
    if delay > 0:
        await clock.sleep(delay)


async def _retry_of(
    run: TaskRun | FlowRun,
    task_run: TaskRun | None,
    spec: TaskSpec | FlowSpec,
    state: State,
) -> tuple[float, State] | None:
    """The wait and AwaitingRetry state of a retry, or None when this attempt is the last."""
    if not transitions.may_retry(state, run.run_count, spec.retries):
        return None
    jitter = None
    if task_run is not None:
        assert isinstance(spec, TaskSpec)
        if not await retry_allowed(spec, task_run, state):
            return None
        jitter = spec.retry_jitter_factor
    return transitions.retry(state, run.run_count, spec.retry_delays, jitter)


def _say_failed(
    run: TaskRun | FlowRun,
    task_run: TaskRun | None,
    spec: TaskSpec | FlowSpec,
    state: State,
    retry: tuple[float, State] | None,
    flow_ctx: ctxmod.FlowRunContext | None,
) -> None:
    """The log lines of a failed attempt, as Prefect words them for tasks and for flows."""
    if state.is_completed():
        return
    if task_run is not None:
        if retry is None:
            lines.task_failed(task_run, state, spec.retries)
        else:
            lines.task_retrying(task_run, state, spec.retries, retry[0])
    elif flow_ctx is not None:
        lines.flow_failed(flow_ctx, state)
        if retry is not None:
            lines.flow_retrying(flow_ctx, state, retry[1])
