"""A task run from call to final state: record → inputs → cache → attempts → result → hooks.

Async callers await ``run_task`` on their own loop; sync callers reach it through the bridge
(``bridge.executors``), which runs the sync body on the calling thread. Every decision about
the next state is ``model.transitions``'; this module records them and runs what they imply.
"""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine import logs
from millstream._engine.bridge.executors import Executor
from millstream._engine.exceptions import ConcurrencySlotAcquisitionError
from millstream._engine.model import transitions
from millstream._engine.model.ids import new_id
from millstream._engine.model.names import render_run_name
from millstream._engine.model.records import TaskRun
from millstream._engine.model.spec import TaskSpec
from millstream._engine.model.states import State, StateType, failed_from_exception, now
from millstream._engine.orchestrate import cancellation, inputs, lines, persist
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate.attempts import link, run_attempts
from millstream._engine.orchestrate.body import task_body_state
from millstream._engine.orchestrate.hooks import run_hooks
from millstream._engine.orchestrate.slots import give_back_tag_slots, take_tag_slots
from millstream._engine.orchestrate.task_transactions import (
    atask_run_finished,
    has_own_transaction,
    lock_cache_key,
    put_cache_on_commit,
    task_run_finished,
    unlock_cache_key,
)
from millstream._engine.results.cache_policies import source_fingerprint
from millstream._engine.results.refs import StoredResult
from millstream._engine.store import Store, get_store

_PENDING = StateType.PENDING
_COMPLETED = StateType.COMPLETED
_FAILED = StateType.FAILED
_CRASHED = StateType.CRASHED


def new_task_run(
    spec: TaskSpec,
    parameters: dict[str, Any],
    flow_ctx: ctxmod.FlowRunContext | None,
    task_run_id: uuid.UUID | None = None,
) -> TaskRun:
    """A new TaskRun record for a call of ``spec`` (its call index taken from the flow run)."""
    if flow_ctx is not None:
        dynamic_key = flow_ctx.next_dynamic_key(spec.task_key)
        flow_run_id: uuid.UUID | None = flow_ctx.flow_run.id
    else:
        dynamic_key = uuid.uuid4().hex[:8]
        flow_run_id = None
    context_tags = ctxmod.tags_var.get()
    tags = spec.tags | context_tags if context_tags else spec.tags
    template = spec.task_run_name
    task_run = TaskRun(
        id=task_run_id or new_id(),
        name=(render_run_name(template, parameters) if isinstance(template, str) else None)
        or f"{spec.name}-{dynamic_key}",
        task_key=spec.task_key,
        task_name=spec.name,
        dynamic_key=dynamic_key,
        flow_run_id=flow_run_id,
        task_version=spec.version,
        parameters=parameters,
        tags=sorted(tags) if tags else [],
        # Memoized per function: a lookup, not a read of the source, on the hot path.
        code_fingerprint=spec.code_fingerprint or source_fingerprint(spec.fn),
    )
    if callable(template):
        # A name callable reads the run's parameters through ``runtime.task_run``.
        naming = ctxmod.TaskRunContext(
            spec=spec, task_run=task_run, parameters=parameters, log_prints=False
        )
        token = ctxmod.task_run_var.set(naming)
        try:
            task_run.name = render_run_name(template, parameters) or task_run.name
        finally:
            ctxmod.task_run_var.reset(token)
    return task_run


async def run_task(
    spec: TaskSpec,
    parameters: dict[str, Any],
    *,
    executor: Executor | None,
    task_run: TaskRun | None = None,
    wait_for: list[Any] | None = None,
) -> State:
    """Orchestrate one task run to its final state (never raises for the body's errors)."""
    flow_ctx = ctxmod.flow_run_var.get()
    if flow_ctx is not None and cancellation.requested(flow_ctx.flow_run.id):
        # A sync flow body asked to stop: this task call is the boundary where it does.
        raise cancellation.FlowRunCancelled(f"Flow run {flow_ctx.flow_run.id} was cancelled")
    store = _store_of(flow_ctx)
    if task_run is None:
        task_run = new_task_run(spec, parameters, flow_ctx)
    earlier = _recorded_earlier(flow_ctx, task_run)
    if earlier is not None:
        return earlier
    links: dict[str, list[uuid.UUID]] = {}
    parameters, failed, changed = await inputs.resolve(parameters, wait_for, links)
    if changed:
        task_run.parameters = parameters
        task_run.input_links = links or None
    pending = State(type=_PENDING, name="Pending")
    task_run.created = pending.timestamp
    _record(store, task_run, pending)
    blocked = transitions.upstream_not_ready(failed)
    if blocked is not None:
        _record(store, task_run, blocked)
        lines.task_finished(task_run, blocked)
        return blocked
    if changed and getattr(executor, "out_of_process", False):
        # Its inputs came from upstream task runs and its body starts in another process:
        # their Completed states are durable first (a kill here cannot re-run them after a
        # dependent already acted on their results).
        await store.flush()
    task_ctx = _context(spec, task_run, parameters, flow_ctx)
    cache_key, answered = await _from_cache(spec, task_ctx, parameters, flow_ctx, store)
    if answered is not None:
        blob = answered.data.blob if isinstance(answered.data, StoredResult) else None
        return await _finish(spec, task_run, answered, blob, executor, store, flow_ctx)
    state = await _attempts_within_limits(
        spec, task_run, parameters, executor, task_ctx, store, flow_ctx
    )
    state, blob = _kept_result(spec, task_run, state, parameters, cache_key, flow_ctx, store)
    return await _finish(spec, task_run, state, blob, executor, store, flow_ctx)


async def _attempts_within_limits(
    spec: TaskSpec,
    task_run: TaskRun,
    parameters: dict[str, Any],
    executor: Executor | None,
    task_ctx: ctxmod.TaskRunContext,
    store: Store,
    flow_ctx: ctxmod.FlowRunContext | None,
) -> State:
    """The attempts, holding a slot of each tag concurrency limit of the run: it waits in
    Pending until they all have room (a limit that can never admit it fails the run)."""
    try:
        grant = await take_tag_slots(store, task_run) if task_run.tags else None
    except ConcurrencySlotAcquisitionError as exc:
        return failed_from_exception(exc, "Task run")
    try:
        return await run_attempts(
            task_run,
            spec,
            store.put_task_run_state,
            _attempt,
            (spec, parameters, executor, task_ctx),
            flow_ctx,
        )
    finally:
        give_back_tag_slots(grant)


def _store_of(flow_ctx: ctxmod.FlowRunContext | None) -> Store:
    if flow_ctx is not None:
        return flow_ctx.store
    return get_store(persist.settings_of(None).database_path)


def _record(store: Store, task_run: TaskRun, state: State, blob: bytes | None = None) -> None:
    task_run.state = state
    store.put_task_run_state(task_run, state, blob)


def _recorded_earlier(flow_ctx: ctxmod.FlowRunContext | None, task_run: TaskRun) -> State | None:
    """The result an earlier attempt of this (resumed) flow run recorded for this call, when the
    task's code is the same; None when it must run."""
    if flow_ctx is None or not flow_ctx.recovered:
        return None
    recorded = flow_ctx.recovered.get((task_run.task_key, task_run.dynamic_key))
    if recorded is None:
        return None
    blob, fingerprint = recorded
    if fingerprint is not None and fingerprint == task_run.code_fingerprint:
        return transitions.reused(StoredResult(blob))
    why = (
        "its code has changed since that result was recorded"
        if fingerprint is not None
        else "no code fingerprint was recorded with it"
    )
    lines.task_not_reused(flow_ctx, task_run, why)
    return None


def _context(
    spec: TaskSpec,
    task_run: TaskRun,
    parameters: dict[str, Any],
    flow_ctx: ctxmod.FlowRunContext | None,
) -> ctxmod.TaskRunContext:
    log_prints = spec.log_prints
    if log_prints is None:
        log_prints = flow_ctx.log_prints if flow_ctx is not None else False
    if flow_ctx is None or log_prints:
        # Outside a flow nothing else has set logging up yet: stdlib records from the task
        # must be captured too.
        logs.configure()
    return ctxmod.TaskRunContext(
        spec=spec, task_run=task_run, parameters=parameters, log_prints=log_prints
    )


async def _from_cache(
    spec: TaskSpec,
    task_ctx: ctxmod.TaskRunContext,
    parameters: dict[str, Any],
    flow_ctx: ctxmod.FlowRunContext | None,
    store: Store,
) -> tuple[str | None, State | None]:
    """``(cache key, the state that answers the call)``: Cached on a hit, Failed when the key
    cannot be computed (an input that cannot be hashed is named, never a silent miss)."""
    policy = spec.cache_policy
    if policy is None:
        return None, None
    try:
        key: str | None = policy.compute_key(
            task_ctx, parameters, flow_ctx.parameters if flow_ctx is not None else {}
        )
    except Exception as exc:
        return None, failed_from_exception(exc, "Task run")
    if key is None:
        return None, None
    task_ctx.task_run.cache_key = key
    locked = await lock_cache_key(policy, key, task_ctx.task_run.id)
    if locked is not None:
        return None, locked
    refresh = spec.refresh_cache
    if refresh is None:
        refresh = persist.settings_of(flow_ctx).tasks.refresh_cache
    blob = None if refresh else await store.lookup_cache(key)
    return key, None if blob is None else transitions.cache_hit(StoredResult(blob), key)


async def _attempt(
    spec: TaskSpec,
    parameters: dict[str, Any],
    executor: Executor | None,
    task_ctx: ctxmod.TaskRunContext,
) -> State:
    token = ctxmod.task_run_var.set(task_ctx)
    try:
        return await task_body_state(spec, parameters, executor)
    finally:
        ctxmod.task_run_var.reset(token)


def _kept_result(
    spec: TaskSpec,
    task_run: TaskRun,
    state: State,
    parameters: dict[str, Any],
    cache_key: str | None,
    flow_ctx: ctxmod.FlowRunContext | None,
    store: Store,
) -> tuple[State, bytes | None]:
    """The final state and the result bytes recorded with it: persisted (and cached) when it
    must be, else journaled for recovery inside a flow run."""
    if state.type is not _COMPLETED:
        return state, None
    choice = spec.persist_result
    if choice is None and flow_ctx is not None:
        choice = flow_ctx.spec.persist_result  # as in Prefect: the flow's choice
    by_default = persist.settings_of(flow_ctx).results.persist_by_default
    if not transitions.should_persist(state, choice, by_default, cache_key):
        return state, persist.journal_of(state) if flow_ctx is not None else None
    state, blob = persist.persist_result(spec, state, parameters, flow_ctx, kind="Task run")
    if cache_key is not None and blob is not None:
        expiration = now() + spec.cache_expiration if spec.cache_expiration else None
        state.state_details.cache_key = cache_key
        state.state_details.cache_expiration = expiration
        task_run.cache_expiration = expiration
        # Inside a transaction() block the entry is written when the block commits.
        put_cache_on_commit(store, cache_key, blob, expiration, task_run.id)
    return state, blob


async def _finish(
    spec: TaskSpec,
    task_run: TaskRun,
    state: State,
    blob: bytes | None,
    executor: Executor | None,
    store: Store,
    flow_ctx: ctxmod.FlowRunContext | None,
) -> State:
    """Record the final state (with its result) and run the hooks it fires."""
    link(task_run, state)
    task_run.end_time = state.timestamp
    _record(store, task_run, state, blob)
    if store.every_task_durable:
        # MILLSTREAM_DURABILITY=every_task: this task's final state is on disk before the
        # caller (and with it the next task) goes on.
        await store.flush()
    if task_run.cache_key is not None:
        unlock_cache_key(spec.cache_policy, task_run.cache_key, task_run.id)
    if spec.on_commit or spec.on_rollback or has_own_transaction(task_run.id):
        args = (task_run, state, spec.on_commit, spec.on_rollback, store, spec.is_async)
        if executor is not None:
            await executor.run(task_run_finished, *args)
        else:
            await atask_run_finished(*args)
    kind = transitions.hook_kind(state, flow=False)
    if kind is not None:
        hooks = spec.hooks.on_completion if kind == "on_completion" else spec.hooks.on_failure
        if hooks:
            await run_hooks(hooks, (spec.owner, task_run, state), kind)
    lines.task_finished(task_run, state)
    if flow_ctx is None and ctxmod.task_run_var.get() is None:
        # A top-level task run (called outside any flow) is durable when the call returns,
        # like a top-level flow run.
        logs.run_finished(task_run.id, store)
        await store.flush()
    return state
