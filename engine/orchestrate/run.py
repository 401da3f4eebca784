"""The run coroutines: bind → Pending → Running → body → retry → final state → persist → hooks.

Both sync and async callers end up here: async callers await these coroutines on their own loop,
sync callers reach them through the portal (``bridge.executors.Portal``) with an executor that
runs the sync body back on the calling thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import inspect
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from millstream._engine.bridge.executors import (
    AbandonableThread,
    Executor,
    get_portal,
    is_private_loop,
)
from millstream._engine.bridge.processes import pid_alive
from millstream._engine.bridge.task_runners import default_task_runner
from millstream._engine.exceptions import (
    FlowRunTimeoutError,
    ParameterTypeError,
    TaskRunTimeoutError,
    UnfinishedRun,
    UpstreamTaskError,
)
from millstream._engine.logs import runlogs as logs
from millstream._engine.model.ids import new_id, rng
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.spec import FlowSpec, Hook, TaskSpec
from millstream._engine.model.states import (
    AwaitingRetry,
    Cancelled,
    Completed,
    Failed,
    Pending,
    ResultLoader,
    Retrying,
    Running,
    State,
    StateType,
    crashed_from_exception,
    failed_from_exception,
    now,
    retry_delay,
    state_result,
    timed_out,
)
from millstream._engine.orchestrate import cancellation
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate.scheduler import (
    EngineFuture,
    RunGroup,
    Upstream,
    has_futures,
    resolve_inputs,
)
from millstream._engine.orchestrate.transactions import task_run_finished
from millstream._engine.results.cache_policies import source_fingerprint
from millstream._engine.results.refs import StoredResult, journal, persist
from millstream._engine.store import HOSTNAME, Store, get_store

logger = logging.getLogger("millstream.engine")

_PID = os.getpid()

# Enum members looked up once: attribute access on an Enum class is slow on the hot path.
_PENDING = StateType.PENDING
_RUNNING = StateType.RUNNING
_COMPLETED = StateType.COMPLETED
_FAILED = StateType.FAILED
_CRASHED = StateType.CRASHED
_INFO, _ERROR = logging.INFO, logging.ERROR
# Argument types that can hold neither futures nor annotations: no need to look inside.
_PLAIN_TYPES = frozenset({int, float, str, bool, bytes, type(None)})


def _is_engine_future(value: Any) -> EngineFuture | None:
    engine_future = getattr(value, "_engine_future", None)
    if isinstance(engine_future, EngineFuture):
        return engine_future
    return value if isinstance(value, EngineFuture) else None


def _is_future(value: Any) -> bool:
    return _is_engine_future(value) is not None


def render_run_name(
    template: str | Callable[[], str] | None, parameters: Mapping[str, Any]
) -> str | None:
    """A run name from a template string over the parameters, or from a callable."""
    if template is None:
        return None
    if callable(template):
        name = template()
        if not isinstance(name, str):
            raise TypeError(
                f"Callable {template!r} for a run name must return a string, got {name!r}"
            )
        return name
    try:
        return template.format(**parameters)
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"Run name template {template!r} refers to {exc} which is not a parameter "
            f"(parameters: {sorted(parameters)})"
        ) from None


# -- hooks ------------------------------------------------------------------------------------
async def run_hooks(
    hooks: tuple[Hook, ...], args: tuple[Any, ...], executor: Executor | None, kind: str
) -> None:
    """Run state hooks in order; an exception is logged and never changes the state."""
    for hook in hooks:
        name = getattr(hook, "__name__", repr(hook))
        try:
            if inspect.iscoroutinefunction(hook):
                await hook(*args)
            elif executor is not None:
                result = await executor.run(hook, *args)
                if inspect.isawaitable(result):
                    await result
            else:
                result = await asyncio.to_thread(hook, *args)
                if inspect.isawaitable(result):
                    await result
        except Exception:
            logger.exception("An error was encountered while running %s hook %r", kind, name)


# -- task runs --------------------------------------------------------------------------------
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


def _log_not_reused(
    flow_ctx: ctxmod.FlowRunContext, task_run: TaskRun, fingerprint: str | None
) -> None:
    why = (
        "its code has changed since that result was recorded"
        if fingerprint is not None
        else "no code fingerprint was recorded with it"
    )
    logs.get_run_logger(flow_ctx).warning(
        "Task run %r (task %r, call %s) completed in an earlier attempt of this flow run, but %s: "
        "running it again instead of reusing its recorded result",
        task_run.name,
        task_run.task_key,
        task_run.dynamic_key,
        why,
    )


def _store_for_tasks(flow_ctx: ctxmod.FlowRunContext | None) -> Store:
    if flow_ctx is not None:
        return flow_ctx.store
    from millstream._engine.settings import get_current_settings

    return get_store(get_current_settings().database_path)


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
    store = _store_for_tasks(flow_ctx)
    if task_run is None:
        task_run = new_task_run(spec, parameters, flow_ctx)
    put = store.put_task_run_state
    if flow_ctx is not None and flow_ctx.recovered:
        recorded = flow_ctx.recovered.get((task_run.task_key, task_run.dynamic_key))
        if recorded is not None:
            recorded_blob, fingerprint = recorded
            if fingerprint is not None and fingerprint == task_run.code_fingerprint:
                # Resuming a crashed flow run: this task run completed before, with the same
                # code; use its result.
                return State(
                    type=_COMPLETED,
                    name="Completed",
                    message="Result recorded by an earlier attempt of this flow run",
                    data=StoredResult(recorded_blob),
                )
            _log_not_reused(flow_ctx, task_run, fingerprint)

    upstream: Upstream | None = None
    plain = _PLAIN_TYPES
    if wait_for or any(type(v) not in plain for v in parameters.values()):
        if wait_for or any(has_futures(v, _is_future) for v in parameters.values()):
            upstream = Upstream()
            if wait_for:
                await resolve_inputs(list(wait_for), _is_engine_future, upstream)
            parameters = {
                k: await resolve_inputs(v, _is_engine_future, upstream)
                for k, v in parameters.items()
            }
            task_run.parameters = parameters
        else:
            # Annotations (unmapped/quote/allow_failure) around plain values are unwrapped here.
            parameters = {k: _unwrap(v) for k, v in parameters.items()}

    state = State(type=_PENDING, name="Pending")
    task_run.created = state.timestamp
    task_run.state = state
    put(task_run, state)
    if upstream is not None and upstream.failed:
        ids = ", ".join(repr(str(i)) for i in upstream.failed)
        state = Pending(
            name="NotReady",
            message=f"Upstream task run {ids} did not reach a 'COMPLETED' state.",
            data=UpstreamTaskError(f"Upstream task run {ids} did not reach a 'COMPLETED' state."),
        )
        task_run.state = state
        put(task_run, state)
        if logs.task_line_enabled(_ERROR):
            logs.task_run_line(task_run, _ERROR, f"Finished in state {state}", last=True)
        return state

    log_prints = spec.log_prints
    if log_prints is None:
        log_prints = flow_ctx.log_prints if flow_ctx is not None else False
    if flow_ctx is None or log_prints:
        # Outside a flow nothing else has set logging up yet: stdlib records from the task
        # must be captured too.
        logs.configure()
    task_ctx = ctxmod.TaskRunContext(
        spec=spec, task_run=task_run, parameters=parameters, log_prints=log_prints
    )
    cache_key: str | None = None
    if spec.cache_policy is not None:
        try:
            cache_key = spec.cache_policy.compute_key(
                task_ctx, parameters, flow_ctx.parameters if flow_ctx is not None else {}
            )
        except Exception as exc:
            # An input that cannot be hashed fails the run, naming it: never a silent miss.
            state = failed_from_exception(exc, "Task run")
            return await _finish_task(spec, task_run, state, None, executor, store, flow_ctx)
        if cache_key is not None:
            task_run.cache_key = cache_key
            refresh = spec.refresh_cache
            if refresh is None:
                refresh = _settings(flow_ctx).tasks.refresh_cache
            blob = None if refresh else await store.lookup_cache(cache_key)
            if blob is not None:
                state = State(type=_COMPLETED, name="Cached", data=StoredResult(blob))
                state.state_details.cache_key = cache_key
                return await _finish_task(spec, task_run, state, blob, executor, store, flow_ctx)
    retries = spec.retries
    while True:
        task_run.run_count += 1
        running = State(type=_RUNNING, name="Running" if task_run.run_count == 1 else "Retrying")
        if task_run.start_time is None:
            task_run.start_time = running.timestamp
        task_run.state = running
        put(task_run, running)
        if spec.on_running:
            await run_hooks(
                spec.on_running, (spec.owner, task_run, running), executor, "on_running"
            )

        token = ctxmod.task_run_var.set(task_ctx)
        try:
            state = await _call_task_body(spec, parameters, executor)
        finally:
            ctxmod.task_run_var.reset(token)
        state.state_details.task_run_id = task_run.id

        if state.type is not _COMPLETED:
            if not (
                state.type is _FAILED
                and task_run.run_count <= retries
                and await _retry_allowed(spec, task_run, state, executor)
            ):
                _log_task_failure(task_run, state, retries)
                break
            delay = retry_delay(spec.retry_delays, task_run.run_count, spec.retry_jitter_factor)
            if logs.task_line_enabled(_INFO):
                when = f"{delay:g} second(s) from now" if delay > 0 else "immediately"
                logs.task_run_line(
                    task_run,
                    _INFO,
                    f"Task run failed with {_failure(state)} - "
                    f"Retry {task_run.run_count}/{retries} will start {when}",
                )
            waiting = AwaitingRetry(
                scheduled_time=now() + dt.timedelta(seconds=delay), message=state.message
            )
            waiting.state_details.task_run_id = task_run.id
            task_run.state = waiting
            put(task_run, waiting)
            if delay > 0:
                await asyncio.sleep(delay)
            continue
        break

    result_blob = None
    if state.type is _COMPLETED:
        persist_it = spec.persist_result
        if persist_it is None and flow_ctx is not None:
            persist_it = flow_ctx.spec.persist_result  # as in Prefect: the flow's choice
        if persist_it is None:
            persist_it = _settings(flow_ctx).results.persist_by_default
        if persist_it or cache_key is not None:
            state, result_blob = _persist_result(spec, state, parameters, flow_ctx)
            if cache_key is not None and result_blob is not None:
                expiration = now() + spec.cache_expiration if spec.cache_expiration else None
                state.state_details.cache_key = cache_key
                state.state_details.cache_expiration = expiration
                task_run.cache_expiration = expiration
                store.put_cache(cache_key, result_blob, expiration, task_run.id)
        elif flow_ctx is not None:
            result_blob = _journal_state_data(state)
    return await _finish_task(spec, task_run, state, result_blob, executor, store, flow_ctx)


def _settings(flow_ctx: ctxmod.FlowRunContext | None) -> Any:
    if flow_ctx is not None and flow_ctx.settings is not None:
        return flow_ctx.settings
    from millstream._engine.settings import get_current_settings

    return get_current_settings()


def _persist_result(
    spec: TaskSpec,
    state: State,
    parameters: dict[str, Any],
    flow_ctx: ctxmod.FlowRunContext | None,
) -> tuple[State, bytes | None]:
    """Encode (and store) a completed run's result; a value that cannot be encoded fails it."""
    settings = _settings(flow_ctx)
    value = state_result(state)
    serializer, storage = spec.result_serializer, spec.result_storage
    if flow_ctx is not None:
        # As in Prefect, a task stores its result where (and how) its flow does unless told.
        serializer = serializer or flow_ctx.spec.result_serializer
        storage = storage if storage is not None else flow_ctx.spec.result_storage
    try:
        blob, serializer = persist(
            value,
            serializer=serializer or settings.results.default_serializer,
            storage=storage,
            storage_key=spec.result_storage_key,
            parameters=parameters,
            inline_max_bytes=settings.results.inline_max_bytes,
            default_dir=settings.results.local_storage_path,
            pickle_fallback=settings.results.pickle_fallback,
        )
    except Exception as exc:  # SerializationError, StorageKeyError, OSError: nothing written
        return failed_from_exception(exc, "Task run"), None
    if not spec.cache_result_in_memory:
        state.data = StoredResult(blob, serializer)
    return state, blob


def _persist_flow_result(
    spec: FlowSpec, state: State, flow_ctx: ctxmod.FlowRunContext
) -> tuple[State, bytes | None]:
    """Store a completed flow run's result as asked (``persist_result``, ``result_storage``,
    ``result_serializer``); a value that cannot be stored fails the run, saying why."""
    settings = _settings(flow_ctx)
    try:
        blob, serializer = persist(
            state_result(state),
            serializer=spec.result_serializer or settings.results.default_serializer,
            storage=spec.result_storage,
            storage_key=None,
            parameters=flow_ctx.parameters,
            inline_max_bytes=settings.results.inline_max_bytes,
            default_dir=settings.results.local_storage_path,
            pickle_fallback=settings.results.pickle_fallback,
        )
    except Exception as exc:  # SerializationError, OSError: nothing written
        failed = failed_from_exception(exc, "Flow run")
        failed.state_details.flow_run_id = flow_ctx.flow_run.id
        return failed, None
    if not spec.cache_result_in_memory:
        state.data = StoredResult(blob, serializer)
    return state, blob


async def _finish_task(
    spec: TaskSpec,
    task_run: TaskRun,
    state: State,
    result_blob: bytes | None,
    executor: Executor | None,
    store: Store,
    flow_ctx: ctxmod.FlowRunContext | None,
) -> State:
    """Record the final state (with its result) and run the hooks for it."""
    state.state_details.task_run_id = task_run.id
    task_run.end_time = state.timestamp
    task_run.state = state
    store.put_task_run_state(task_run, state, result_blob)
    if spec.on_commit or spec.on_rollback:
        args = (state.type is _COMPLETED, spec.on_commit, spec.on_rollback, task_run.cache_key)
        if executor is not None:
            await executor.run(task_run_finished, *args)
        else:
            task_run_finished(*args)
    if state.type is _COMPLETED:
        if spec.on_completion:
            await run_hooks(
                spec.on_completion, (spec.owner, task_run, state), executor, "on_completion"
            )
    elif state.type is _FAILED or state.type is _CRASHED:
        if spec.on_failure:
            await run_hooks(spec.on_failure, (spec.owner, task_run, state), executor, "on_failure")
    # One line per task run: the level is checked before anything is built (hot path).
    level = _INFO if state.type is _COMPLETED else _ERROR
    if logs.task_line_enabled(level):
        logs.task_run_line(task_run, level, f"Finished in state {state}", last=True)
    if flow_ctx is None and ctxmod.task_run_var.get() is None:
        # A top-level task run (called outside any flow) is durable when the call returns,
        # like a top-level flow run.
        logs.run_finished(task_run.id, store)
        await store.flush()
    return state


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


def _log_task_failure(task_run: TaskRun, state: State, retries: int) -> None:
    """Say why a task run ends without (another) retry, with the traceback (as Prefect)."""
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


def _unwrap(value: Any) -> Any:
    from millstream._engine.orchestrate.scheduler import BaseAnnotation

    return value.value if isinstance(value, BaseAnnotation) else value


async def _retry_allowed(
    spec: TaskSpec, task_run: TaskRun, state: State, executor: Executor | None
) -> bool:
    fn = spec.retry_condition_fn
    if fn is None:
        return True
    try:
        if inspect.iscoroutinefunction(fn):
            return bool(await fn(spec.owner, task_run, state))
        if executor is not None:
            return bool(await executor.run(fn, spec.owner, task_run, state))
        return bool(fn(spec.owner, task_run, state))
    except Exception:
        logger.exception("retry_condition_fn %r raised; not retrying", fn)
        return False


async def _call_task_body(
    spec: TaskSpec, parameters: dict[str, Any], executor: Executor | None
) -> State:
    args, kwargs = spec.binder.call_args(parameters)
    timeout = spec.timeout_seconds
    try:
        if spec.is_async:
            if timeout is None:
                value = await spec.fn(*args, **kwargs)
            else:
                value = await _with_timeout(spec.fn(*args, **kwargs), timeout, TaskRunTimeoutError)
        elif timeout is None:
            assert executor is not None
            value = (
                await executor.run(_call_kw, spec.fn, args, kwargs)
                if kwargs
                else await executor.run(spec.fn, *args)
            )
        else:
            body = AbandonableThread(TaskRunTimeoutError)
            value = await _with_timeout(
                body.run(_call_kw, spec.fn, args, kwargs), timeout, TaskRunTimeoutError
            )
        if not spec.is_async and inspect.isawaitable(value):
            # A sync body that returns an async task's call (a coroutine): its value is the
            # result, as in Prefect.
            value = await value
    except TaskRunTimeoutError as exc:
        return timed_out("Task run", timeout or 0, exc)
    except Exception as exc:
        return failed_from_exception(exc, "Task run")
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return crashed_from_exception(exc, "Task run")
    return _value_to_state(value)


def _call_kw(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return fn(*args, **kwargs)


async def _with_timeout(
    awaitable: Any, seconds: float, error: type[TaskRunTimeoutError] | type[FlowRunTimeoutError]
) -> Any:
    try:
        async with asyncio.timeout(seconds) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise error(f"{seconds:g} second(s)") from None
        raise


def _holds_states(data: Any) -> bool:
    # A run that returned states (of futures): not a plain value to store or replay.
    return isinstance(data, State) or (
        isinstance(data, list) and bool(data) and all(isinstance(d, State) for d in data)
    )


def _journal_state_data(state: State) -> bytes | None:
    data = state.data
    if _holds_states(data):
        return None
    if isinstance(data, ResultLoader):
        return data.blob if isinstance(data, StoredResult) else None
    return journal(data)


def _value_to_state(value: Any) -> State:
    if isinstance(value, State):
        return value
    return State(type=_COMPLETED, name="Completed", data=value)


# -- flow runs --------------------------------------------------------------------------------
_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "daring",
    "eager",
    "fancy",
    "gentle",
    "hasty",
    "icy",
    "jolly",
    "keen",
    "lively",
    "mellow",
    "nimble",
    "olive",
    "proud",
    "quiet",
    "rapid",
    "steady",
    "tidy",
    "upbeat",
    "vivid",
    "witty",
    "young",
    "zesty",
    "bold",
    "clever",
    "dapper",
    "earnest",
    "fuzzy",
)
_NOUNS = (
    "otter",
    "heron",
    "badger",
    "falcon",
    "marmot",
    "lynx",
    "salmon",
    "beaver",
    "crane",
    "wren",
    "newt",
    "ibis",
    "gecko",
    "moose",
    "panda",
    "quokka",
    "raven",
    "stoat",
    "tapir",
    "vole",
    "walrus",
    "yak",
    "zebu",
    "alpaca",
    "bison",
    "coyote",
    "dingo",
    "egret",
    "ferret",
    "gibbon",
)


def random_run_name() -> str:
    """A readable random flow run name like ``brisk-otter``."""
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"


def final_state_from_return(value: Any) -> State:
    """A flow's final state from what its body returned (Prefect's rules)."""
    if isinstance(value, State):
        return value
    engine_future = _is_engine_future(value)
    if engine_future is not None:
        return _states_to_final([engine_future.state], single=True)
    if isinstance(value, list | tuple | set) and value:
        items = list(value)
        if all(isinstance(v, State) or _is_future(v) for v in items):
            states = [_state_of(v) for v in items]
            return _states_to_final(states, single=False)
    return Completed(data=value)


def _state_of(value: Any) -> State:
    if isinstance(value, State):
        return value
    engine_future = _is_engine_future(value)
    assert engine_future is not None
    return engine_future.state


def _states_to_final(states: list[State], single: bool) -> State:
    data: Any = states[0] if single else states
    bad = [s for s in states if s.type is not StateType.COMPLETED]
    if not bad:
        return Completed(data=data)
    kinds = {s.type for s in bad}
    message = f"{len(bad)}/{len(states)} states failed."
    if kinds <= {StateType.CANCELLED}:
        from millstream._engine.model.states import Cancelled

        return Cancelled(message=f"{len(bad)}/{len(states)} states cancelled.", data=data)
    if StateType.CRASHED in kinds and len(kinds) == 1:
        from millstream._engine.model.states import Crashed

        return Crashed(message=f"{len(bad)}/{len(states)} states crashed.", data=data)
    if all(s.is_final() for s in bad):
        return Failed(message=message, data=data)
    return Failed(message=f"{len(bad)}/{len(states)} states are not final.", data=data)


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
    return FlowRun(
        id=run_id,
        # A callable name is rendered once the run's context exists (``run_flow``).
        name=(
            render_run_name(spec.flow_run_name, parameters)
            if isinstance(spec.flow_run_name, str)
            else None
        )
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
) -> State:
    """Orchestrate one flow run to its final state (bad parameters give a Failed state).

    Raises only for an unusable database and for cancellation and crashes, after recording them.
    """
    from millstream._engine.settings import get_current_settings

    settings = get_current_settings()
    parent_ctx = ctxmod.flow_run_var.get()
    if parent_ctx is not None:
        store = parent_ctx.store
    else:
        store = get_store(settings.database_path)
        await store.ensure_open()
        logs.configure()

    recovered: dict[tuple[str, str], tuple[bytes, str | None]] | None = None
    if claimed is not None:
        existing: FlowRun | None = claimed  # a worker just claimed it: no need to read it again
    else:
        existing = await store.read_flow_run_or_none(flow_run_id) if flow_run_id else None
    if existing is not None:
        if existing.state_type is StateType.COMPLETED:
            # Called again with the id of a finished run: its recorded result, nothing runs.
            return _recorded_final_state(existing, await store.read_flow_run_result(existing.id))
        _check_not_running_elsewhere(existing)
        flow_run = existing
        flow_run.pid, flow_run.hostname, flow_run.end_time = _PID, HOSTNAME, None
        if existing.run_count > 0:  # it ran before: reuse what its task runs completed
            recovered = await store.read_completed_task_results(existing.id)
    else:
        flow_run = new_flow_run(
            spec, parameters, store, parent_flow_ctx=parent_ctx, flow_run_id=flow_run_id
        )
    put = store.put_flow_run_state
    if parent_ctx is not None and existing is None:
        # A subflow: a task run of the parent flow run stands for it and follows its states.
        tracker = subflow_task_run(spec, parameters, parent_ctx)
        flow_run.parent_task_run_id = tracker.id
        put = _mirroring(store, tracker)

    if spec.validate_parameters:
        from millstream._engine.validation import validate_parameters

        try:
            parameters = validate_parameters(spec.fn, parameters)
        except ParameterTypeError as exc:
            failed = Failed(
                message="Validation of flow parameters failed with error: "
                f"{type(exc).__name__}: {exc}",
                data=exc,
            )
            failed.state_details.flow_run_id = flow_run.id
            flow_run.state = failed
            flow_run.end_time = failed.timestamp
            put(flow_run, failed)
            if parent_ctx is None:
                await store.flush()
            # The caller raises it (``flow_result``) unless it asked for the state.
            return failed
        flow_run.parameters = parameters
    if parent_ctx is None and flow_run.parameters_blob is None:
        flow_run.parameters_blob = journal(parameters)

    loop = asyncio.get_running_loop()
    if is_private_loop(loop):
        # This loop stops while the sync body runs inline: submitted task runs go to the
        # engine loop thread, which keeps running them meanwhile.
        portal = get_portal()
        group_loop, group_thread = portal.loop, portal.thread_id
    else:
        group_loop, group_thread = loop, threading.get_ident()
    runner = spec.task_runner or default_task_runner()
    pool = runner.acquire()
    group = RunGroup(group_loop, group_thread, pool, runner.max_concurrency())
    flow_ctx = ctxmod.FlowRunContext(
        spec=spec, flow_run=flow_run, parameters=parameters, loop=loop, group=group, store=store
    )
    flow_ctx.recovered = recovered
    flow_ctx.settings = settings
    flow_ctx.deployment = deployment
    if existing is None and callable(spec.flow_run_name):
        # A name callable reads the run's parameters through ``runtime.flow_run``.
        token = ctxmod.flow_run_var.set(flow_ctx)
        try:
            flow_run.name = render_run_name(spec.flow_run_name, parameters) or flow_run.name
        except BaseException:
            runner.release(pool)
            raise
        finally:
            ctxmod.flow_run_var.reset(token)
    pending = Pending()
    pending.state_details.flow_run_id = flow_run.id
    flow_run.state = pending
    put(flow_run, pending)
    if parent_ctx is None:
        store.track_live(flow_run.id)
    # An async body is stopped by cancelling this task; a sync body at its next task call.
    cancellation.register(flow_run.id, cancel_task=spec.is_async)
    try:
        state = await _flow_attempts(spec, flow_run, flow_ctx, executor, put)
    except asyncio.CancelledError as exc:
        group.cancel_all()
        if not cancellation.requested(flow_run.id):
            await _record_crash(exc, spec, flow_run, executor, put, parent_ctx, store, runner, pool)
            _log_flow_finished(flow_ctx, flow_run.state)
            raise
        # Stopped on request (client.cancel_flow_run, a worker shutting down): the run ends
        # Cancelled and the caller gets that state, not the CancelledError.
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
        state = await _finish_cancelled(spec, flow_run, executor, put)
    except cancellation.FlowRunCancelled:
        group.cancel_all()
        state = await _finish_cancelled(spec, flow_run, executor, put)
    finally:
        cancellation.unregister(flow_run.id)
    _log_flow_finished(flow_ctx, state)
    return await _flow_ended(state, flow_run, parent_ctx, store, runner, pool)


def subflow_task_run(
    spec: FlowSpec, parameters: dict[str, Any], parent_ctx: ctxmod.FlowRunContext
) -> TaskRun:
    """The task run of the parent flow run that stands for a call of the subflow ``spec``.

    As in Prefect: named like a task run of the flow's function, numbered among the parent's
    calls of it (a random key when called from inside a task, whose calls may run
    concurrently in any order).
    """
    fn = spec.fn
    # The same recipe as a task's key (millstream.tasks): stable across processes for one function.
    try:
        source_file = os.path.abspath(inspect.getfile(fn))
    except TypeError:
        source_file = getattr(fn, "__module__", "") or ""
    digest = hashlib.sha1(f"{source_file}:{fn.__qualname__}".encode()).hexdigest()[:8]
    task_key = f"{fn.__qualname__}-{digest}"
    if ctxmod.task_run_var.get() is not None:
        dynamic_key = str(uuid.uuid4())
    else:
        dynamic_key = parent_ctx.next_dynamic_key(task_key)
    tags = ctxmod.tags_var.get()
    return TaskRun(
        id=new_id(),
        name=f"{spec.name}-{dynamic_key}",
        task_key=task_key,
        task_name=spec.name,
        dynamic_key=dynamic_key,
        flow_run_id=parent_ctx.flow_run.id,
        task_version=spec.version,
        parameters=parameters,
        tags=sorted(tags) if tags else [],
        created=now(),
    )


def _mirroring(store: Store, tracker: TaskRun) -> Callable[..., None]:
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


def _log_flow_finished(flow_ctx: ctxmod.FlowRunContext, state: State | None) -> None:
    # Prefect logs a flow run's end at INFO whatever the state.
    if state is not None and logs.flow_line_enabled(_INFO):
        logs.flow_run_line(flow_ctx, _INFO, f"Finished in state {state}")


def _log_flow_failure(flow_ctx: ctxmod.FlowRunContext, state: State) -> None:
    """Say why a flow run attempt failed, with the traceback (Prefect's lines)."""
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


async def _record_crash(
    exc: BaseException,
    spec: FlowSpec,
    flow_run: FlowRun,
    executor: Executor | None,
    put: Callable[..., None],
    parent_ctx: ctxmod.FlowRunContext | None,
    store: Store,
    runner: Any,
    pool: Any,
) -> None:
    """Record a flow run cancelled from outside (the awaiting task was cancelled) as Crashed."""
    state = crashed_from_exception(exc, "Flow run")
    state.state_details.flow_run_id = flow_run.id
    flow_run.end_time = state.timestamp
    flow_run.state = state
    put(flow_run, state)
    if spec.on_crashed:
        await asyncio.shield(
            run_hooks(spec.on_crashed, (spec.owner, flow_run, state), executor, "on_crashed")
        )
    runner.release(pool)
    if parent_ctx is None:
        store.untrack_live(flow_run.id)
        await asyncio.shield(store.flush())


async def _flow_ended(
    state: State,
    flow_run: FlowRun,
    parent_ctx: ctxmod.FlowRunContext | None,
    store: Store,
    runner: Any,
    pool: Any,
) -> State:
    runner.release(pool)
    logs.run_finished(flow_run.id, store)  # its queued log lines and any dropped count
    if parent_ctx is None:
        store.untrack_live(flow_run.id)
        # Flush point: a top-level flow run's terminal state is durable before the call returns.
        await store.flush()
    return state


async def _finish_cancelled(
    spec: FlowSpec, flow_run: FlowRun, executor: Executor | None, put: Callable[..., None]
) -> State:
    """Record a flow run stopped on request as Cancelled and run its on_cancellation hooks."""
    state = Cancelled(message="Flow run was cancelled on request.")
    state.state_details.flow_run_id = flow_run.id
    flow_run.end_time = state.timestamp
    flow_run.state = state
    put(flow_run, state)
    if spec.on_cancellation:
        await run_hooks(
            spec.on_cancellation, (spec.owner, flow_run, state), executor, "on_cancellation"
        )
    return state


def _recorded_final_state(run: FlowRun, blob: bytes | None) -> State:
    assert run.state is not None
    state = run.state.copy()
    if blob is not None:
        state.data = StoredResult(blob)
    else:
        state.data = _Unrecorded(run.id)
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


async def _flow_attempts(
    spec: FlowSpec,
    flow_run: FlowRun,
    flow_ctx: ctxmod.FlowRunContext,
    executor: Executor | None,
    put: Callable[..., None],
) -> State:
    args, kwargs = spec.binder.call_args(flow_ctx.parameters)
    state: State
    while True:
        flow_run.run_count += 1
        running = Running() if flow_run.run_count == 1 else Retrying()
        running.state_details.flow_run_id = flow_run.id
        if flow_run.start_time is None:
            flow_run.start_time = running.timestamp
        flow_run.state = running
        put(flow_run, running)
        if spec.on_running:
            await run_hooks(
                spec.on_running, (spec.owner, flow_run, running), executor, "on_running"
            )

        if logs.flow_line_enabled(_INFO):
            kind = "subflow" if flow_run.parent_task_run_id is not None else "flow"
            logs.flow_run_line(
                flow_ctx,
                _INFO,
                f"Beginning {kind} run {flow_run.name!r} for flow {flow_run.flow_name!r}",
            )
        flow_ctx.task_counters.clear()
        token = ctxmod.flow_run_var.set(flow_ctx)
        task_token = ctxmod.task_run_var.set(None)
        try:
            state = await _call_flow_body(spec, args, kwargs, executor, flow_ctx.group)
        finally:
            ctxmod.task_run_var.reset(task_token)
            ctxmod.flow_run_var.reset(token)
        state.state_details.flow_run_id = flow_run.id
        if state.type is not _COMPLETED:
            _log_flow_failure(flow_ctx, state)

        if state.type is StateType.FAILED and flow_run.run_count <= spec.retries:
            delay = retry_delay(spec.retry_delays, flow_run.run_count, None)
            waiting = AwaitingRetry(
                scheduled_time=now() + dt.timedelta(seconds=delay), message=state.message
            )
            if logs.flow_line_enabled(_INFO):
                logs.flow_run_line(
                    flow_ctx,
                    _INFO,
                    f"Received non-final state {waiting.name!r} when proposing final state "
                    f"{state.name!r} and will attempt to run again...",
                )
            waiting.state_details.flow_run_id = flow_run.id
            flow_run.state = waiting
            put(flow_run, waiting)
            if delay > 0:
                await asyncio.sleep(delay)
            continue
        break

    flow_run.end_time = state.timestamp
    flow_run.state = state
    result_blob = None
    if state.type is _COMPLETED:
        persist_it = spec.persist_result
        if persist_it is None:
            persist_it = _settings(flow_ctx).results.persist_by_default
        if persist_it and not _holds_states(state.data):
            persisted, result_blob = _persist_flow_result(spec, state, flow_ctx)
            state = persisted
            flow_run.end_time = state.timestamp
            flow_run.state = state
        elif flow_ctx.flow_run.parent_flow_run_id is None:
            result_blob = _journal_state_data(state)
    put(flow_run, state, result_blob)
    hooks: tuple[Hook, ...] = ()
    if state.type is StateType.COMPLETED:
        hooks = spec.on_completion
    elif state.type is StateType.FAILED:
        hooks = spec.on_failure
    elif state.type is StateType.CRASHED:
        hooks = spec.on_crashed
    # A body that returns Cancelled() does not fire on_cancellation (as in Prefect); the
    # engine's own cancellation path runs those hooks.
    if hooks:
        await run_hooks(hooks, (spec.owner, flow_run, state), executor, "state")
    return state


async def _call_flow_body(
    spec: FlowSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    executor: Executor | None,
    group: RunGroup,
) -> State:
    timeout = spec.timeout_seconds
    try:
        try:
            if spec.is_async:
                body = spec.fn(*args, **kwargs)
                value = await (
                    body if timeout is None else _with_timeout(body, timeout, FlowRunTimeoutError)
                )
            elif timeout is None:
                assert executor is not None
                value = await executor.run(_call_kw, spec.fn, args, kwargs)
            else:
                thread = AbandonableThread(FlowRunTimeoutError)
                value = await _with_timeout(
                    thread.run(_call_kw, spec.fn, args, kwargs), timeout, FlowRunTimeoutError
                )
            if not spec.is_async and inspect.isawaitable(value):
                value = await value  # a returned async task call: its value is the result
        except FlowRunTimeoutError:
            group.cancel_all()
            await asyncio.shield(group.wait_all())
            raise
        except Exception:
            # The body failed: what it submitted still runs to its end (and is recorded).
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
        return timed_out("Flow run", timeout or 0, exc)
    except Exception as exc:
        return failed_from_exception(exc, "Flow run")
    except asyncio.CancelledError:
        raise
    except cancellation.FlowRunCancelled:
        raise
    except BaseException as exc:
        # KeyboardInterrupt, SystemExit: the run crashed. Returned (not raised) so that the
        # loop orchestrating it survives; the caller re-raises it from the Crashed state.
        return crashed_from_exception(exc, "Flow run")
    return final_state_from_return(value)


def flow_result(state: State, raise_on_failure: bool = True) -> Any:
    """What a flow call returns for its final state (raising its exception if it failed)."""
    return state_result(state, raise_on_failure)
