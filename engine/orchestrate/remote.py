"""Task bodies in other processes (``ProcessPoolTaskRunner``, ``DaskTaskRunner``): what crosses,
the worker's side, and the orchestrating side's call.

Only the body leaves this process. States, retries, timeouts, the cache, ``wait_for`` and every
database write stay here: a worker gets one encoded request and gives back one encoded outcome
(the value or the exception, and the lines the body logged), which this process records as
the attempt's outcome. A worker never opens the store.

What crosses (the rule): parameters and return values travel in the type-faithful msgpack
encoding of results (``results.faithful``: builtins, tuples, sets, datetimes, UUIDs, decimals,
enums, dataclasses, msgspec Structs, named tuples). A value it cannot hold is refused with a
``SerializationError`` naming the parameter (or the return value) and the runner's
``allow_pickle=True``, which lets such values travel by stdlib pickle instead. The task's
function travels by reference (``module:qualname``, imported by the worker); a function that
cannot be found that way (defined inside a function, a lambda) is refused on the process pool;
Dask ships it as Dask ships code. An exception raised by the body is rebuilt here from its
class and arguments (pickled instead when allowed); one that cannot be rebuilt becomes a
``RemoteTaskError`` naming its type and message. The worker's traceback is kept as a note.

Context propagation (for tracing): ``add_context_propagator(inject, extract)`` registers a pair;
``inject()`` runs here and returns a ``dict[str, str]`` carried in the request, ``extract(carrier)``
returns a context manager entered around the body in the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from millstream._engine.bridge.task_runners import BodyTimedOut, RemoteExecutor
from millstream._engine.exceptions import (
    RemoteTaskError,
    SerializationError,
    TaskRunTimeoutError,
)
from millstream._engine.logs import TASK_RUNS, RemoteTarget, remote_target, replay_lines
from millstream._engine.model.records import TaskRun
from millstream._engine.model.spec import Binder, TaskSpec
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.results.faithful import MsgpackSerializer, try_msgpack
from millstream._engine.store.core import no_store_here

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()
_PICKLING = MsgpackSerializer(pickle_fallback=True)
_STRICT = MsgpackSerializer(pickle_fallback=False)
_HOW = (
    "Values sent to and from worker processes must have a msgpack encoding (builtins, "
    "dataclasses, msgspec Structs, enums, named tuples, datetimes, UUIDs, decimals); pass "
    "allow_pickle=True to the task runner to send other values with pickle"
)
_task_runs_logger = logging.getLogger(TASK_RUNS)
_NO_STORE = (
    "Task {!r} runs in a worker process (ProcessPoolTaskRunner, DaskTaskRunner), which never "
    "records runs or reads the database: its outcome is recorded by the flow's process. Call "
    "plain functions there (a task's own function is task.fn), and submit tasks and call flows "
    "from the flow instead."
)

# -- context propagation (a seam for tracing) ---------------------------------------------------
Carrier = dict[str, str]
_propagators: list[
    tuple[Callable[[], Carrier], Callable[[Carrier], contextlib.AbstractContextManager[Any]]]
] = []


def add_context_propagator(
    inject: Callable[[], Carrier],
    extract: Callable[[Carrier], contextlib.AbstractContextManager[Any]],
) -> None:
    """Carry context to worker processes: ``inject()`` here, ``extract(carrier)`` there."""
    _propagators.append((inject, extract))


def _inject() -> Carrier:
    carrier: Carrier = {}
    for inject, _ in _propagators:
        carrier.update(inject())
    return carrier


@contextlib.contextmanager
def _extracted(carrier: Carrier) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        if carrier:
            for _, extract in _propagators:
                stack.enter_context(extract(carrier))
        yield


# -- the task's function, by reference -----------------------------------------------------------
def function_ref(fn: Any) -> str | None:
    """``"module:qualname"`` when importing that name finds ``fn`` (or a task wrapping it)."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    if found is fn or getattr(found, "fn", None) is fn:
        return f"{module}:{qualname}"
    return None


_resolved: dict[str, Any] = {}


def resolve_function(ref: str) -> Any:
    """The function ``function_ref`` named, imported here (a task's function, unwrapped)."""
    fn = _resolved.get(ref)
    if fn is None:
        module_name, qualname = ref.split(":", 1)
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
        fn = _resolved[ref] = getattr(found, "fn", found)
    return fn


# -- values ----------------------------------------------------------------------------------------
def _encode(value: Any, allow_pickle: bool) -> bytes | None:
    encoded, _ = try_msgpack(value)
    if encoded is None and allow_pickle:
        encoded = _PICKLING.dumps(value)
    return encoded


def _decode(blob: bytes) -> Any:
    return _PICKLING.loads(blob)


def _encode_arguments(
    spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any], allow_pickle: bool
) -> bytes:
    blob = _encode((args, kwargs), allow_pickle)
    if blob is not None:
        return blob
    names = list(inspect.signature(spec.fn).parameters)
    for index, value in [*enumerate(args), *kwargs.items()]:
        encoded, reason = try_msgpack(value)
        if encoded is None:
            name = names[index] if isinstance(index, int) and index < len(names) else index
            raise SerializationError(
                f"Parameter {name!r} of task {spec.name!r} cannot be sent to a worker process: "
                f"{reason}. {_HOW}."
            )
    raise SerializationError(f"The parameters of task {spec.name!r} cannot be sent. {_HOW}.")


def _encode_result(value: Any, allow_pickle: bool) -> bytes:
    blob = _encode(value, allow_pickle)
    if blob is None:
        _, reason = try_msgpack(value)
        raise SerializationError(
            f"The return value of the task cannot be sent back from the worker process: "
            f"{reason}. {_HOW}."
        )
    return blob


def _class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode_error(exc: BaseException, allow_pickle: bool) -> list[Any]:
    pickled = None
    if allow_pickle:
        try:
            pickled = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pickled = None
    args, _ = try_msgpack(exc.args)
    text = "".join(traceback.format_exception(exc)).rstrip("\n")
    return [_class_ref(type(exc)), args, str(exc), text, pickled]


def _rebuild_error(error: list[Any]) -> BaseException:
    ref, args, message, text, pickled = error
    exc: BaseException | None = None
    if pickled is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(pickled)
    if exc is None and args is not None:
        with contextlib.suppress(Exception):
            cls = resolve_function(ref)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                exc = cls(*_decode(args))
    if not isinstance(exc, BaseException):
        name = ref.split(":", 1)[1]
        exc = RemoteTaskError(f"{name}: {message}" if message else name)
    exc.add_note(f"Raised in a worker process:\n{text}")
    return exc


# -- the worker's side -----------------------------------------------------------------------------
_loops = threading.local()


def _run_coroutine(coro: Any, timeout: float | None) -> Any:
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = _loops.loop = asyncio.new_event_loop()
    if timeout is not None:
        coro = _with_timeout(coro, timeout)
    return loop.run_until_complete(coro)


async def _with_timeout(coro: Any, seconds: float) -> Any:
    try:
        async with asyncio.timeout(seconds) as scope:
            return await coro
    except TimeoutError:
        if scope.expired():
            raise TaskRunTimeoutError(f"{seconds:g} second(s)") from None
        raise


def _invoke(fn: Any, arguments: Any, is_async: bool, timeout: float | None) -> Any:
    args, kwargs = arguments
    started = time.monotonic()
    value = fn(*args, **kwargs)
    if is_async or inspect.isawaitable(value):
        value = _run_coroutine(value, timeout if is_async else None)
    elif timeout is not None and time.monotonic() - started > timeout:
        # A sync body cannot be stopped; one that returns past its timeout still timed out.
        raise TaskRunTimeoutError(f"{timeout:g} second(s)")
    return value


def _plain_lines(lines: list[tuple[Any, ...]]) -> list[Any]:
    plain = []
    for level, name, message, created, exc_text, extra in lines:
        if extra:
            extra = {
                k: v if type(v) in (str, int, float, bool) else repr(v) for k, v in extra.items()
            }
        plain.append([level, name, message, created, exc_text, extra])
    return plain


_specs: dict[Any, TaskSpec] = {}


def _worker_context(
    fn: Any, is_async: bool, arguments: Any, run: bytes | None
) -> ctxmod.TaskRunContext | None:
    """The task run context a body sees in the worker (``runtime.task_run``, the run's name,
    id, tags and run count); the run logger there is the collecting one."""
    if run is None:
        return None
    task_run = msgspec.msgpack.decode(run, type=TaskRun)
    spec = _specs.get(fn)
    if spec is None:
        spec = TaskSpec(
            fn=fn,
            name=task_run.task_name,
            task_key=task_run.task_key,
            is_async=is_async,
            binder=Binder(fn),
        )
        if len(_specs) < 1_024:  # functions shipped by value are new objects each time
            _specs[fn] = spec
    args, kwargs = arguments
    parameters = spec.binder.bind(tuple(args), kwargs)
    task_run.parameters = parameters
    return ctxmod.TaskRunContext(
        spec=spec, task_run=task_run, parameters=parameters, log_prints=False
    )


def run_request(
    request: bytes, fn: Any = None, on_start: Callable[[], object] | None = None
) -> bytes:
    """Run one task body in this (worker) process: an encoded request in, an encoded outcome
    out. Never opens the store; its lines go back with the outcome. ``on_start()`` is called
    when the body starts (its function imported, its arguments decoded)."""
    ref, is_async, arguments, timeout, fields, level, carrier, allow_pickle, prints, tags, run = (
        _decoder.decode(request)
    )
    target = RemoteTarget(fields, level, prints)
    token = remote_target.set(target)
    refusing = no_store_here.set(_NO_STORE.format(fields.get("task_name")))
    tagged = ctxmod.tags_var.set(frozenset(tags))  # ``tags(...)`` around the submit, as here
    task_ctx = None
    try:
        fn = fn or resolve_function(ref)
        args = _decode(arguments)
        task_ctx = ctxmod.task_run_var.set(_worker_context(fn, is_async, args, run))
        with _extracted(carrier):
            if on_start is not None:
                on_start()
            value = _invoke(fn, args, is_async, timeout)
        outcome = [True, _encode_result(value, allow_pickle), None]
    except Exception as exc:
        outcome = [False, None, _encode_error(exc, allow_pickle)]
    finally:
        if task_ctx is not None:
            ctxmod.task_run_var.reset(task_ctx)
        ctxmod.tags_var.reset(tagged)
        no_store_here.reset(refusing)
        remote_target.reset(token)
    outcome.append(_plain_lines(target.collect or []))
    return _encoder.encode(outcome)


# -- the orchestrating side ------------------------------------------------------------------------
def _fields(task_ctx: ctxmod.TaskRunContext | None) -> dict[str, Any]:
    if task_ctx is None:
        return {}
    task_run = task_ctx.task_run
    flow_ctx = ctxmod.flow_run_var.get()
    flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    return {
        "flow_run_id": str(task_run.flow_run_id) if task_run.flow_run_id else None,
        "flow_run_name": flow_run.name if flow_run is not None else None,
        "flow_name": flow_run.flow_name if flow_run is not None else None,
        "task_run_id": str(task_run.id),
        "task_run_name": task_run.name,
        "task_name": task_run.task_name,
    }


def _function_for(executor: RemoteExecutor, spec: TaskSpec) -> tuple[str | None, Any]:
    """``(reference, None)``, or ``(None, the function)`` for a transport that ships code."""
    ref = function_ref(spec.fn)
    if ref is not None and (executor.by_reference_only or not ref.startswith("__main__:")):
        return ref, None
    if not executor.by_reference_only:
        return None, spec.fn
    raise TypeError(
        f"Task {spec.name!r} cannot run in a worker process: its function "
        f"{getattr(spec.fn, '__qualname__', spec.fn)!r} cannot be imported there by module and "
        "name (it is defined inside a function, a lambda or a callable object). Define it at "
        "module level, or use ThreadPoolTaskRunner or DaskTaskRunner."
    )


def _run_record(task_ctx: ctxmod.TaskRunContext | None) -> bytes | None:
    """The task run's record (without its state and parameters) for the worker's context."""
    if task_ctx is None:
        return None
    return _encoder.encode(msgspec.structs.replace(task_ctx.task_run, state=None, parameters={}))


def build_request(
    executor: RemoteExecutor, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bytes, Any]:
    """The encoded request for one attempt of ``spec``'s body, and the function object when
    it travels by value."""
    ref, fn = _function_for(executor, spec)
    arguments = _encode_arguments(spec, args, kwargs, executor.allow_pickle)
    task_ctx = ctxmod.task_run_var.get()
    request = _encoder.encode(
        [
            ref,
            spec.is_async,
            arguments,
            spec.timeout_seconds,
            _fields(task_ctx),
            _task_runs_logger.getEffectiveLevel(),
            _inject(),
            executor.allow_pickle,
            bool(task_ctx is not None and task_ctx.log_prints),
            sorted(ctxmod.tags_var.get()),
            _run_record(task_ctx),
        ]
    )
    return request, fn


def read_outcome(outcome: bytes, processors: tuple[Processor, ...] = ()) -> Any:
    """The body's value from an encoded outcome (raises the body's exception); the lines it
    logged are queued for the current task run, through ``processors`` if any."""
    ok, value, error, lines = _decoder.decode(outcome)
    task_ctx = ctxmod.task_run_var.get()
    if task_ctx is not None and lines:
        kept = [tuple(line) for line in lines]
        if processors:
            kept = _processed(kept, processors, _fields(task_ctx))
        replay_lines(task_ctx, kept)
    if ok:
        return _decode(value)
    raise _rebuild_error(error)


# A processor of lines from worker processes, as Prefect's ProcessPoolTaskRunner takes them:
# ``(message_type, payload) -> (message_type, payload) | None`` (None drops the message).
Processor = Callable[[str, Any], "tuple[str, Any] | None"]
_LOG = "log"


def _processed(
    lines: list[tuple[Any, ...]], processors: tuple[Processor, ...], fields: dict[str, Any]
) -> list[tuple[Any, ...]]:
    kept = []
    for level, name, message, created, exc_text, extra in lines:
        payload: Any = {
            "flow_run_id": fields.get("flow_run_id"),
            "task_run_id": fields.get("task_run_id"),
            "name": name,
            "level": level,
            "timestamp": _iso(created),
            "message": message,
            **(extra or {}),
        }
        processed = _through(processors, payload)
        if processed is not None:
            level = processed.get("level", level)
            name = processed.get("name", name)
            message = processed.get("message", message)
            kept.append((level, name, str(message), created, exc_text, extra))
    return kept


def _through(processors: tuple[Processor, ...], payload: dict[str, Any]) -> dict[str, Any] | None:
    kind: str = _LOG
    for processor in processors:
        try:
            result = processor(kind, payload)
        except Exception:
            _task_runs_logger.exception("A subprocess message processor raised; line dropped")
            return None
        if result is None:
            return None
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str)):
            return None
        kind, payload = result
    return payload if kind == _LOG and isinstance(payload, dict) else None


def _iso(created: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(created, dt.UTC).isoformat()


async def call_remote(
    executor: RemoteExecutor,
    spec: TaskSpec,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[BaseException],
) -> Any:
    """Run one attempt of ``spec``'s body through ``executor``; its value, or its exception
    raised here. A timeout counts from the body's start, not while it waits for a worker: the
    worker stops an async body at it and fails a sync one that returns after it; an executor
    that learns when bodies start (the process pool) also fails the run at the deadline,
    abandoning a sync body still running."""
    request, fn = build_request(executor, spec, args, kwargs)
    processors = getattr(executor, "message_processors", ())
    try:
        outcome = await executor.send(run_request, request, fn, spec.timeout_seconds)
    except BodyTimedOut:
        raise error(f"{spec.timeout_seconds:g} second(s)") from None
    return read_outcome(outcome, processors)


__all__ = [
    "Carrier",
    "add_context_propagator",
    "build_request",
    "call_remote",
    "function_ref",
    "read_outcome",
    "resolve_function",
    "run_request",
]
