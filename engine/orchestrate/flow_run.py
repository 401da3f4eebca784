"""A flow run from call to final state: record → validate → attempts → result → hooks → flush.

A top-level flow run's terminal state is durable before ``run_flow`` returns (the flush
point); a subflow's is recorded with its parent's. A flow run called again with the id of an
unfinished run resumes it, reusing what its task runs completed; with the id of a completed
run it returns that run's recorded result and runs nothing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from typing import Any

from millstream._engine import logs
from millstream._engine.bridge.executors import Executor
from millstream._engine.bridge.loops import get_portal, is_private_loop
from millstream._engine.bridge.pids import pid_alive
from millstream._engine.bridge.task_runners import default_task_runner
from millstream._engine.exceptions import (
    ParameterTypeError,
    Pause,
    UnfinishedRun,
    UpstreamTaskError,
)
from millstream._engine.model import transitions
from millstream._engine.model.ids import new_id
from millstream._engine.model.names import random_run_name, render_run_name
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.spec import FlowSpec
from millstream._engine.model.states import (
    Pending,
    ResultLoader,
    State,
    StateType,
    crashed_from_exception,
    now,
    state_result,
)
from millstream._engine.orchestrate import cancellation, inputs, lines, persist, subflows
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate.attempts import Put, link, run_attempts
from millstream._engine.orchestrate.body import flow_body_state
from millstream._engine.orchestrate.claims import claim_or_wait, take_or_wait
from millstream._engine.orchestrate.hooks import run_hooks
from millstream._engine.orchestrate.scheduler import RunGroup
from millstream._engine.orchestrate.subflows import mirrored, subflow_task_run
from millstream._engine.results.refs import StoredResult, journal
from millstream._engine.store import HOSTNAME, Store, get_store
from millstream._engine.validation import validate_parameters

_PID = os.getpid()
_COMPLETED = StateType.COMPLETED


def new_flow_run(
    spec: FlowSpec,
    parameters: dict[str, Any],
    store: Store,
    *,
    parent_flow_ctx: ctxmod.FlowRunContext | None,
    flow_run_id: uuid.UUID | None = None,
) -> FlowRun:
    """A new FlowRun record for a call of ``spec``."""
    parent_task = ctxmod.task_run_var.get()
    tags = ctxmod.tags_var.get()
    parent_id = parent_flow_ctx.flow_run.id if parent_flow_ctx is not None else None
    root_id = (
        (parent_flow_ctx.flow_run.root_flow_run_id or parent_id)
        if parent_flow_ctx is not None
        else None
    )
    run_id = flow_run_id or new_id()
    created = now()
    template = spec.flow_run_name
    return FlowRun(
        id=run_id,
        # A callable name is rendered once the run's context exists (``_name_run``).
        name=(render_run_name(template, parameters) if isinstance(template, str) else None)
        or random_run_name(),
        flow_id=store.flow_id(spec.name),
        flow_name=spec.name,
        flow_version=spec.version,
        parameters=parameters,
        tags=sorted(tags) if tags else [],
        parent_task_run_id=parent_task.task_run.id if parent_task is not None else None,
        parent_flow_run_id=parent_id,
        root_flow_run_id=root_id or run_id,
        entrypoint=spec.entrypoint,
        created=created,
        pid=_PID,
        hostname=HOSTNAME,
        heartbeat=created,
    )


async def run_flow(
    spec: FlowSpec,
    parameters: dict[str, Any],
    *,
    executor: Executor | None,
    flow_run_id: uuid.UUID | None = None,
    deployment: Any = None,
    claimed: FlowRun | None = None,
    wait_for: list[Any] | None = None,
) -> State:
    """Orchestrate one flow run to its final state (bad parameters give a Failed state).

    ``wait_for``: futures (or states) to wait for first; a failed one leaves the run Pending
    "NotReady" without running it, as a task's failed upstream does.
    Raises only for an unusable database and for cancellation and crashes, after recording them.
    """
    parent_ctx = ctxmod.flow_run_var.get()
    settings = persist.settings_of(None)  # read once: the store's path and the run's settings
    store = await _store_of(parent_ctx, settings)
    existing, final = await _existing_run(spec, parameters, store, parent_ctx, flow_run_id, claimed)
    if final is not None:
        return final
    flow_run, recovered = await _the_run(spec, parameters, store, parent_ctx, existing, flow_run_id)
    prepared = await _before_body(spec, parameters, flow_run, store, parent_ctx, existing, wait_for)
    if isinstance(prepared, State):
        return prepared
    parameters, put, tracker = prepared
    flow_ctx = _context(spec, flow_run, parameters, store, deployment, recovered)
    flow_ctx.settings = settings
    try:
        if existing is None:
            _name_run(spec, flow_run, flow_ctx)
        _record(put, flow_run, Pending())
        state = await _run_to_the_end(spec, flow_run, flow_ctx, executor, put)
    finally:
        pool = flow_ctx.group.pool
        if pool is not None:
            (spec.task_runner or default_task_runner()).release(pool)
    lines.flow_finished(flow_ctx, state)
    logs.run_finished(flow_run.id, store)  # its queued log lines and any dropped count
    if parent_ctx is None:
        store.untrack_live(flow_run.id)
        # Flush point: a top-level flow run's terminal state is durable before the call returns.
        # (LeaseLost if another process took the run over meanwhile: nothing of ours counted).
        await store.flush_run(flow_run.id)
    elif tracker is not None:
        subflows.remember(parent_ctx, tracker, state, flow_ctx.persisted)
    return state


async def _before_body(
    spec: FlowSpec,
    parameters: dict[str, Any],
    flow_run: FlowRun,
    store: Store,
    parent_ctx: ctxmod.FlowRunContext | None,
    existing: FlowRun | None,
    wait_for: list[Any] | None,
) -> State | tuple[dict[str, Any], Put, TaskRun | None]:
    """``(validated parameters, state writer, subflow tracker)``, or the final state of a run
    that does not start: reused from the parent's earlier attempt, not ready, invalid."""
    put = store.put_flow_run_state
    tracker = None
    if parent_ctx is not None and existing is None:
        # A subflow: a task run of the parent flow run stands for it and follows its states.
        tracker = subflow_task_run(spec, parameters, parent_ctx)
        earlier = subflows.reused(parent_ctx, tracker)
        if earlier is not None:
            return earlier
        flow_run.parent_task_run_id = tracker.id
        put = mirrored(store, tracker)
    if wait_for:
        not_ready = await _upstream_not_ready(wait_for, flow_run, put)
        if not_ready is not None:
            return not_ready
    try:
        return _validated(spec, parameters, flow_run), put, tracker
    except ParameterTypeError as exc:
        return await _failed_validation(exc, flow_run, put, parent_ctx, store)


async def _upstream_not_ready(wait_for: list[Any], flow_run: FlowRun, put: Put) -> State | None:
    """Wait for ``wait_for``; the recorded NotReady state when one of them did not complete."""
    _, failed, _ = await inputs.resolve({}, wait_for)
    state = transitions.upstream_not_ready(failed)
    if state is not None:
        _record(put, flow_run, state)
    return state


def flow_result(state: State, raise_on_failure: bool = True) -> Any:
    """What a flow call returns for its final state (raising its exception if it failed).

    As in Prefect, a body that returned a collection of states (its futures' states) gives
    the caller that collection, whatever the run's aggregated state; a returned state gives
    the final state's result (a run's state comes back as the State itself)."""
    data = state.data
    if transitions.is_state_iterable(data):
        return data
    if raise_on_failure and isinstance(data, UpstreamTaskError):
        raise data  # not run: an upstream it waited for did not complete
    return state_result(state, raise_on_failure)


# -- before the body ----------------------------------------------------------------------------
async def _existing_run(
    spec: FlowSpec,
    parameters: dict[str, Any],
    store: Store,
    parent_ctx: ctxmod.FlowRunContext | None,
    flow_run_id: uuid.UUID | None,
    claimed: FlowRun | None,
) -> tuple[FlowRun | None, State | None]:
    """The recorded run to resume (None: a new run), or the final state to return at once."""
    # A worker that just claimed the run passes it: no need to read it again.
    existing = claimed or (await store.read_flow_run_or_none(flow_run_id) if flow_run_id else None)
    if flow_run_id is not None and parent_ctx is None and claimed is None:
        existing, waited = await _by_caller_id(spec, parameters, store, flow_run_id, existing)
        if waited is not None:
            blob = await store.read_flow_run_result(waited.id)
            return waited, _recorded_final_state(waited, blob)
    if existing is not None and existing.state_type is _COMPLETED:
        # Called again with the id of a finished run: its recorded result, nothing runs.
        return existing, _recorded_final_state(
            existing, await store.read_flow_run_result(existing.id)
        )
    return existing, None


async def _by_caller_id(
    spec: FlowSpec,
    parameters: dict[str, Any],
    store: Store,
    flow_run_id: uuid.UUID,
    existing: FlowRun | None,
) -> tuple[FlowRun | None, FlowRun | None]:
    """A caller-given id: ``(run to resume or None for a new one, run another owner
    finished meanwhile or None)``. A new id is one atomic claim (a loser waits for the
    winner); an unfinished run is waited for while live elsewhere, else taken over."""
    lease = persist.settings_of(None).serve.lease_seconds
    if existing is None:
        existing = await claim_or_wait(spec, parameters, store, flow_run_id, lease)
    elif existing.state is not None and not existing.state.is_final():
        existing = await take_or_wait(store, existing, lease)
    else:
        return existing, None  # finished before this call: as before (result, or a re-run)
    if existing is not None and existing.state is not None and existing.state.is_final():
        return existing, existing
    return existing, None


async def _store_of(parent_ctx: ctxmod.FlowRunContext | None, settings: Any) -> Store:
    if parent_ctx is not None:
        return parent_ctx.store
    store = get_store(settings.database_path)
    await store.ensure_open()
    logs.configure()
    return store


async def _the_run(
    spec: FlowSpec,
    parameters: dict[str, Any],
    store: Store,
    parent_ctx: ctxmod.FlowRunContext | None,
    existing: FlowRun | None,
    flow_run_id: uuid.UUID | None,
) -> tuple[FlowRun, dict[tuple[str, str], tuple[bytes, str | None]] | None]:
    """The run's record (new, or the unfinished one resumed) and, when it ran before, what its
    completed task runs recorded."""
    if existing is None:
        run = new_flow_run(
            spec, parameters, store, parent_flow_ctx=parent_ctx, flow_run_id=flow_run_id
        )
        return run, None
    _check_not_running_elsewhere(existing)
    existing.pid, existing.hostname, existing.end_time = _PID, HOSTNAME, None
    if existing.run_count == 0:
        return existing, None
    return existing, await store.read_completed_task_results(existing.id)


def _validated(spec: FlowSpec, parameters: dict[str, Any], flow_run: FlowRun) -> dict[str, Any]:
    """The parameters coerced to their annotations (raises ``ParameterTypeError``)."""
    if spec.validate_parameters:
        parameters = validate_parameters(spec.fn, parameters)
        flow_run.parameters = parameters
    if flow_run.parent_flow_run_id is None and flow_run.parameters_blob is None:
        flow_run.parameters_blob = journal(parameters)
    return parameters


async def _failed_validation(
    exc: ParameterTypeError,
    flow_run: FlowRun,
    put: Put,
    parent_ctx: ctxmod.FlowRunContext | None,
    store: Store,
) -> State:
    failed = transitions.validation_failed(exc)
    flow_run.end_time = failed.timestamp
    _record(put, flow_run, failed)
    if parent_ctx is None:
        await store.flush()
    # The caller raises it (``flow_result``) unless it asked for the state.
    return failed


def _context(
    spec: FlowSpec,
    flow_run: FlowRun,
    parameters: dict[str, Any],
    store: Store,
    deployment: Any,
    recovered: dict[tuple[str, str], tuple[bytes, str | None]] | None,
) -> ctxmod.FlowRunContext:
    """The flow run's context, with the run group its submitted task runs go to."""
    loop = asyncio.get_running_loop()
    if is_private_loop(loop):
        # This loop stops while the sync body runs inline: submitted task runs go to the
        # engine loop thread, which keeps running them meanwhile.
        portal = get_portal()
        group_loop, group_thread = portal.loop, portal.thread_id
    else:
        group_loop, group_thread = loop, threading.get_ident()
    runner = spec.task_runner or default_task_runner()
    group = RunGroup(group_loop, group_thread, runner.acquire(), runner.max_concurrency())
    flow_ctx = ctxmod.FlowRunContext(
        spec=spec, flow_run=flow_run, parameters=parameters, loop=loop, group=group, store=store
    )
    flow_ctx.recovered = recovered
    flow_ctx.deployment = deployment
    return flow_ctx


def _name_run(spec: FlowSpec, flow_run: FlowRun, flow_ctx: ctxmod.FlowRunContext) -> None:
    if callable(spec.flow_run_name):
        # A name callable reads the run's parameters through ``runtime.flow_run``.
        token = ctxmod.flow_run_var.set(flow_ctx)
        try:
            flow_run.name = (
                render_run_name(spec.flow_run_name, flow_ctx.parameters) or flow_run.name
            )
        finally:
            ctxmod.flow_run_var.reset(token)


def _record(put: Put, flow_run: FlowRun, state: State, blob: bytes | None = None) -> None:
    link(flow_run, state)
    flow_run.state = state
    put(flow_run, state, blob)


# -- the body and its end ------------------------------------------------------------------------
async def _run_to_the_end(
    spec: FlowSpec,
    flow_run: FlowRun,
    flow_ctx: ctxmod.FlowRunContext,
    executor: Executor | None,
    put: Put,
) -> State:
    """Attempts until the last, then its result and hooks; a stop on request ends Cancelled, a
    cancellation from outside is recorded Crashed and raised on."""
    if flow_run.parent_flow_run_id is None:
        flow_ctx.store.track_live(flow_run.id)
    # An async body is stopped by cancelling this task; a sync body at its next task call.
    cancellation.register(flow_run.id, cancel_task=spec.is_async)
    try:
        state = await run_attempts(
            flow_run, spec, put, _attempt, (spec, flow_ctx, executor), flow_ctx
        )
        return await _finish(spec, flow_run, flow_ctx, state, put)
    except asyncio.CancelledError as exc:
        flow_ctx.group.cancel_all()
        if not cancellation.requested(flow_run.id):
            await _record_crash(exc, spec, flow_run, flow_ctx, put)
            raise
        # Stopped on request (client.cancel_flow_run, a worker shutting down): the run ends
        # Cancelled and the caller gets that state, not the CancelledError.
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        return await _finish_cancelled(spec, flow_run, put)
    except cancellation.FlowRunCancelled:
        flow_ctx.group.cancel_all()
        return await _finish_cancelled(spec, flow_run, put)
    except Pause as signal:
        # Suspended: its state is recorded; the run continues elsewhere once resumed.
        assert isinstance(signal.state, State)
        return signal.state
    finally:
        cancellation.unregister(flow_run.id)


async def _attempt(
    spec: FlowSpec, flow_ctx: ctxmod.FlowRunContext, executor: Executor | None
) -> State:
    flow_ctx.task_counters.clear()
    args, kwargs = spec.binder.call_args(flow_ctx.parameters)
    token = ctxmod.flow_run_var.set(flow_ctx)
    task_token = ctxmod.task_run_var.set(None)
    try:
        return await flow_body_state(spec, args, kwargs, executor, flow_ctx.group)
    finally:
        ctxmod.task_run_var.reset(task_token)
        ctxmod.flow_run_var.reset(token)


async def _finish(
    spec: FlowSpec,
    flow_run: FlowRun,
    flow_ctx: ctxmod.FlowRunContext,
    state: State,
    put: Put,
) -> State:
    """Record the final state with what is kept of its result, and run the hooks it fires."""
    blob = None
    by_default = persist.settings_of(flow_ctx).results.persist_by_default
    if transitions.should_persist(state, spec.persist_result, by_default, None) and not (
        persist.holds_states(state.data)
    ):
        state, blob = persist.persist_result(
            spec, state, flow_ctx.parameters, flow_ctx, kind="Flow run"
        )
        flow_ctx.persisted = blob is not None
    elif state.type is _COMPLETED and flow_run.parent_flow_run_id is None:
        blob = persist.journal_of(state)
    flow_run.end_time = state.timestamp
    _record(put, flow_run, state, blob)
    # A body that returns Cancelled() fires no hook (as in Prefect); the engine's own
    # cancellation path runs on_cancellation.
    kind = transitions.hook_kind(state, flow=True)
    if kind is not None:
        hooks = getattr(spec.hooks, kind)
        if hooks:
            await run_hooks(hooks, (spec.owner, flow_run, state), "state")
    return state


async def _record_crash(
    exc: BaseException,
    spec: FlowSpec,
    flow_run: FlowRun,
    flow_ctx: ctxmod.FlowRunContext,
    put: Put,
) -> None:
    """Record a flow run cancelled from outside (the awaiting task was cancelled) as Crashed."""
    state = crashed_from_exception(exc, "Flow run")
    flow_run.end_time = state.timestamp
    _record(put, flow_run, state)
    if spec.hooks.on_crashed:
        await asyncio.shield(
            run_hooks(spec.hooks.on_crashed, (spec.owner, flow_run, state), "on_crashed")
        )
    lines.flow_finished(flow_ctx, state)
    if flow_run.parent_flow_run_id is None:
        flow_ctx.store.untrack_live(flow_run.id)
        await asyncio.shield(flow_ctx.store.flush())


async def _finish_cancelled(spec: FlowSpec, flow_run: FlowRun, put: Put) -> State:
    """Record a flow run stopped on request as Cancelled and run its on_cancellation hooks."""
    state = transitions.cancelled_on_request()
    flow_run.end_time = state.timestamp
    _record(put, flow_run, state)
    if spec.hooks.on_cancellation:
        await run_hooks(
            spec.hooks.on_cancellation, (spec.owner, flow_run, state), "on_cancellation"
        )
    return state


# -- runs called again ----------------------------------------------------------------------------
def _recorded_final_state(run: FlowRun, blob: bytes | None) -> State:
    assert run.state is not None
    state = run.state.copy()
    state.data = StoredResult(blob) if blob is not None else _Unrecorded(run.id)
    return state


class _Unrecorded(ResultLoader):
    """The result of a finished run that was not recorded (too large, or needs pickle)."""

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id

    def load(self) -> Any:
        raise UnfinishedRun(
            f"Flow run {self.run_id} finished earlier but its result was not recorded (results "
            "are journaled when msgspec encodes them in at most 64 KB; persist_result=True "
            "records any result)"
        )


def _check_not_running_elsewhere(run: FlowRun) -> None:
    if run.state is None or run.state.is_final():
        return
    if run.hostname == HOSTNAME and run.pid is not None and run.pid != _PID:
        if pid_alive(run.pid):
            raise RuntimeError(
                f"Flow run {run.id} is still running in process {run.pid}; it can be resumed "
                "only once that process is gone"
            )
