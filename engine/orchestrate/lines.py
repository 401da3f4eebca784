"""The engine's own log lines about runs, worded as Prefect's: starts, retries, failures, ends.

Each checks its level before building anything: a line below the level costs nothing.
"""

from __future__ import annotations

import logging

from millstream._engine import logs
from millstream._engine.model.records import TaskRun
from millstream._engine.model.states import State, StateType
from millstream._engine.orchestrate import context as ctxmod

_INFO, _ERROR = logging.INFO, logging.ERROR
_COMPLETED = StateType.COMPLETED
_FAILED = StateType.FAILED
_CRASHED = StateType.CRASHED
_FINISHED_COMPLETED = "Finished in state Completed()"


def _raised(state: State) -> BaseException | None:
    """The exception a failed state was made from, if the body raised it (None: a returned
    state)."""
    exc = state.data
    if isinstance(exc, BaseException) and (
        state.state_details.traceback is not None or state.name == "TimedOut"
    ):
        return exc
    return None


def _failure(state: State) -> str:
    """What failed, as Prefect's retry and failure lines say it."""
    exc = _raised(state)
    return f"exception: {exc!r}" if exc is not None else f"state: {state!r}"


# -- task runs ------------------------------------------------------------------------------------
def task_retrying(task_run: TaskRun, state: State, retries: int, delay: float) -> None:
    """A failed attempt that will be retried."""
    if logs.task_line_enabled(_INFO):
        when = f"{delay:g} second(s) from now" if delay > 0 else "immediately"
        logs.task_run_line(
            task_run,
            _INFO,
            f"Task run failed with {_failure(state)} - "
            f"Retry {task_run.run_count}/{retries} will start {when}",
        )


def task_failed(task_run: TaskRun, state: State, retries: int) -> None:
    """Why a task run ends without (another) retry, with the traceback (as Prefect)."""
    if not logs.task_line_enabled(_ERROR):
        return
    if state.type is _CRASHED:
        logs.task_run_line(task_run, _ERROR, f"Crash detected! {state.message}")
        return
    if state.type is not _FAILED or task_run.run_count <= retries:
        return  # not failed, or its retry_condition_fn declined: Prefect says nothing here
    exhausted = " - Retries are exhausted" if retries > 0 else ""
    logs.task_run_line(
        task_run,
        _ERROR,
        f"Task run failed with {_failure(state)}{exhausted}",
        _raised(state),
        state.state_details.traceback,
    )
    if state.name == "TimedOut":
        logs.task_run_line(task_run, _ERROR, state.message or "Task run timed out")


def task_finished(task_run: TaskRun, state: State) -> None:
    """The one line every task run ends with (the level is checked first: hot path)."""
    level = _INFO if state.type is _COMPLETED else _ERROR
    if logs.task_line_enabled(level):
        if level is _INFO and state.name == "Completed" and not state.message:
            message = _FINISHED_COMPLETED  # nearly every line: no state to format
        else:
            message = f"Finished in state {state}"
        logs.task_run_line(task_run, level, message, last=True)


def task_not_reused(flow_ctx: ctxmod.FlowRunContext, task_run: TaskRun, why: str) -> None:
    """A task run of a resumed flow run that runs again instead of reusing its recorded result."""
    logs.get_run_logger(flow_ctx).warning(
        "Task run %r (task %r, call %s) completed in an earlier attempt of this flow run, but %s: "
        "running it again instead of reusing its recorded result",
        task_run.name,
        task_run.task_key,
        task_run.dynamic_key,
        why,
    )


# -- flow runs ------------------------------------------------------------------------------------
def flow_beginning(flow_ctx: ctxmod.FlowRunContext) -> None:
    """An attempt of a flow run starts."""
    if logs.flow_line_enabled(_INFO):
        run = flow_ctx.flow_run
        kind = "subflow" if run.parent_task_run_id is not None else "flow"
        logs.flow_run_line(
            flow_ctx, _INFO, f"Beginning {kind} run {run.name!r} for flow {run.flow_name!r}"
        )


def flow_failed(flow_ctx: ctxmod.FlowRunContext, state: State) -> None:
    """Why a flow run attempt failed, with the traceback (Prefect's lines)."""
    if not logs.flow_line_enabled(_ERROR):
        return
    if state.type is _CRASHED:
        logs.flow_run_line(flow_ctx, _ERROR, f"Crash detected! {state.message}")
    elif state.type is _FAILED:
        if state.name == "TimedOut":
            logs.flow_run_line(flow_ctx, _ERROR, state.message or "Flow run timed out")
            return
        exc = _raised(state)
        if exc is not None:
            logs.flow_run_line(
                flow_ctx,
                _ERROR,
                f"Encountered exception during execution: {exc!r}",
                exc,
                state.state_details.traceback,
            )


def flow_retrying(flow_ctx: ctxmod.FlowRunContext, state: State, waiting: State) -> None:
    """A failed flow run attempt that will run again."""
    if logs.flow_line_enabled(_INFO):
        logs.flow_run_line(
            flow_ctx,
            _INFO,
            f"Received non-final state {waiting.name!r} when proposing final state "
            f"{state.name!r} and will attempt to run again...",
        )


def flow_finished(flow_ctx: ctxmod.FlowRunContext, state: State | None) -> None:
    """Prefect logs a flow run's end at INFO whatever the state."""
    if state is not None and logs.flow_line_enabled(_INFO):
        logs.flow_run_line(flow_ctx, _INFO, f"Finished in state {state}")
