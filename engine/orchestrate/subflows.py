"""Subflows: the task run of the parent flow run that stands for a flow called inside it.

As in Prefect, that task run is named like a task run of the flow's function, numbered among
the parent's calls of it, and takes on each state of the child flow run.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from millstream._engine.model.ids import new_id
from millstream._engine.model.keys import task_key
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.spec import FlowSpec
from millstream._engine.model.states import State, now
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate.attempts import Put
from millstream._engine.store import Store


def subflow_task_run(
    spec: FlowSpec, parameters: dict[str, Any], parent_ctx: ctxmod.FlowRunContext
) -> TaskRun:
    """The parent's task run for a call of the subflow ``spec`` (a random call key when called
    from inside a task, whose calls may run concurrently in any order)."""
    key = task_key(spec.fn)
    if ctxmod.task_run_var.get() is not None:
        dynamic_key = str(uuid.uuid4())
    else:
        dynamic_key = parent_ctx.next_dynamic_key(key)
    tags = ctxmod.tags_var.get()
    return TaskRun(
        id=new_id(),
        name=f"{spec.name}-{dynamic_key}",
        task_key=key,
        task_name=spec.name,
        dynamic_key=dynamic_key,
        flow_run_id=parent_ctx.flow_run.id,
        task_version=spec.version,
        parameters=parameters,
        tags=sorted(tags) if tags else [],
        created=now(),
    )


def mirrored(store: Store, tracker: TaskRun) -> Put:
    """A flow run state writer that also gives each state to ``tracker`` (the subflow's task
    run in its parent), as Prefect's server does."""
    put_flow, put_task = store.put_flow_run_state, store.put_task_run_state

    def put(run: FlowRun, state: State, result: bytes | None = None) -> None:
        put_flow(run, state, result)
        mirror = state.copy(
            state_details=msgspec.structs.replace(
                state.state_details,
                flow_run_id=tracker.flow_run_id,
                task_run_id=tracker.id,
                child_flow_run_id=run.id,
            )
        )
        tracker.run_count = run.run_count
        tracker.start_time = run.start_time
        tracker.end_time = mirror.timestamp if mirror.is_final() else None
        tracker.state = mirror
        put_task(tracker, mirror)

    return put


def reused(parent_ctx: ctxmod.FlowRunContext, tracker: TaskRun) -> State | None:
    """The final state of this subflow call from an earlier attempt of its parent, when that
    attempt completed it with a persisted result (Prefect reuses such a child run when the
    parent retries; one without a persisted result runs again)."""
    if parent_ctx.flow_run.run_count <= 1:
        return None
    return parent_ctx.finished_subflows.get((tracker.task_key, tracker.dynamic_key))


def remember(
    parent_ctx: ctxmod.FlowRunContext, tracker: TaskRun, state: State, persisted: bool
) -> None:
    """Keep a completed subflow's final state for the parent's later attempts."""
    if persisted and state.is_completed():
        parent_ctx.finished_subflows[(tracker.task_key, tracker.dynamic_key)] = state
