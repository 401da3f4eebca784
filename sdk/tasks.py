"""The ``@task`` decorator and ``Task`` objects: call, ``submit``, ``map``, ``with_options``."""

from __future__ import annotations

import datetime as dt
import inspect
from asyncio import _get_running_loop
from collections.abc import Callable, Coroutine
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, Unpack, cast, overload

from millstream._binding import UNBOUND, MethodBinding
from millstream._engine.model.keys import task_key
from millstream._engine.model.spec import Binder, Hook, TaskSpec
from millstream._engine.model.states import (
    State,
    exponential_backoff,
    raise_interrupt,
    resolve_retry_delays,
    state_result,
)
from millstream._engine.model.transitions import is_state_iterable
from millstream._engine.orchestrate import context as ctxmod
from millstream._engine.orchestrate import task_run as engine_run
from millstream._engine.orchestrate.scheduler import EngineFuture
from millstream._engine.results.cache_policies import source_fingerprint
from millstream._mapping import mapped_calls
from millstream._options import TASK_OPTIONS, NotSet, TaskOptions, check_hooks
from millstream._sync import run_sync
from millstream.futures import PrefectConcurrentFuture, PrefectFuture, PrefectFutureList

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


# Tasks already warned about: a sync call inside an async run is said once per task.
_warned_blocking: set[str] = set()


def _warn_if_blocking(spec: TaskSpec) -> None:
    """Say, once per task, that a sync task called directly in an async run blocks its loop."""
    ctx = ctxmod.task_run_var.get() or ctxmod.flow_run_var.get()
    if ctx is None or not ctx.spec.is_async or spec.task_key in _warned_blocking:
        return
    _warned_blocking.add(spec.task_key)
    from millstream._engine.logs import get_run_logger

    get_run_logger().warning(
        f"Sync task {spec.name!r} was called directly inside the async "
        f"{type(ctx.spec).__name__.removesuffix('Spec').lower()} {ctx.spec.name!r}: its body "
        "blocks the event loop until it returns (nothing else on the loop runs meanwhile). "
        f"Make it an async task and await it, or use {spec.name}.submit(...) to run it on a "
        "worker thread."
    )


class Task(MethodBinding, Generic[P, R]):
    """A function whose calls are recorded as task runs, with retries, caching and timeouts."""

    _kind = "Task"

    fn: Callable[P, R]
    # The options' attributes (set from TASK_OPTIONS in __init__), for type checkers.
    name: str
    description: str | None
    tags: set[str]
    version: str | None
    cache_policy: Any
    cache_key_fn: Callable[..., str | None] | None
    cache_expiration: dt.timedelta | None
    task_run_name: str | Callable[[], str] | None
    retries: int
    retry_delay_seconds: float | list[float] | Callable[[int], list[float]]
    retry_jitter_factor: float | None
    persist_result: bool | None
    result_storage: Any
    result_serializer: Any
    result_storage_key: str | None
    cache_result_in_memory: bool
    timeout_seconds: float | None
    log_prints: bool | None
    refresh_cache: bool | None
    on_completion_hooks: list[Hook]
    on_failure_hooks: list[Hook]
    on_running_hooks: list[Hook]
    on_commit_hooks: list[Hook]
    on_rollback_hooks: list[Hook]
    retry_condition_fn: Callable[..., bool] | None

    def __init__(self, fn: Callable[P, R], **options: Unpack[TaskOptions]) -> None:
        if not callable(fn):
            raise TypeError("'fn' must be callable")
        self.fn = fn
        for attr, value in TASK_OPTIONS.read(options, fn).items():
            setattr(self, attr, value)
        self.isasync = inspect.iscoroutinefunction(fn)
        # Options read together: the delay list, the implied persist_result, the cache policy.
        self._retry_delays = resolve_retry_delays(self.retry_delay_seconds, self.retries)
        given_persist = self.persist_result
        self.persist_result = _implied_persist_result(
            given_persist,
            self.cache_policy,
            self.cache_key_fn,
            self.result_storage,
            self.result_serializer,
            self.result_storage_key,
        )
        # As in Prefect, a storage key alone does not bring the default cache policy in.
        self._cache_policy = _resolve_cache_policy(
            self.cache_policy,
            self.cache_key_fn,
            self.persist_result if self.result_storage_key is None else given_persist,
        )
        self.task_key = task_key(fn)
        self._binder = Binder(fn)
        self._options: dict[str, Any] = dict(options)  # as given: with_options starts here
        self._spec_cache: TaskSpec | None = None
        self._bound_self: Any = UNBOUND
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    # -- the engine's view ----------------------------------------------------------------------
    @property
    def source_code(self) -> str | None:
        """The task function's source (None when it has none: a REPL, a builtin), as Prefect."""
        try:
            return inspect.getsource(self.fn)
        except (TypeError, OSError):
            return None

    @property
    def spec(self) -> TaskSpec:
        """The frozen spec the engine runs (rebuilt after a hook decorator adds a hook)."""
        spec = self._spec_cache
        if spec is None:
            spec = self._spec_cache = TaskSpec(
                fn=self.fn,
                task_key=self.task_key,
                is_async=self.isasync,
                code_fingerprint=source_fingerprint(self.fn),
                binder=self._binder,
                owner=self,
                retry_delays=self._retry_delays,
                cache_policy=self._cache_policy,
                **TASK_OPTIONS.spec_fields(self),
            )
        return spec

    # -- calling --------------------------------------------------------------------------------
    @overload
    def __call__(self: Task[P, NoReturn], *args: P.args, **kwargs: P.kwargs) -> None: ...

    @overload
    def __call__(self: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task now and return its result (a coroutine to await for an async task).

        ``return_state=True`` returns the final State instead of raising; ``wait_for`` lists
        futures to wait for first.
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        args = self._with_self(args)
        spec = self.spec
        parameters = spec.binder.bind(args, kwargs)
        if spec.is_async:
            return self._acall(spec, parameters, return_state, wait_for)
        if _get_running_loop() is not None:
            _warn_if_blocking(spec)
        state = run_sync(
            lambda caller: engine_run.run_task(spec, parameters, executor=caller, wait_for=wait_for)
        )
        return raise_interrupt(state) if return_state else _call_result(state)

    async def _acall(
        self,
        spec: TaskSpec,
        parameters: dict[str, Any],
        return_state: bool,
        wait_for: list[Any] | None,
    ) -> Any:
        state = await engine_run.run_task(spec, parameters, executor=None, wait_for=wait_for)
        return raise_interrupt(state) if return_state else _call_result(state)

    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> PrefectFuture[T]: ...

    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> PrefectFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """Start a run of the task concurrently in the current flow run; return its future.

        ``return_state=True`` returns the final State (waiting for it); ``wait_for`` lists
        futures that must finish first.
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_ctx = ctxmod.flow_run_var.get()
        if flow_ctx is None:
            # Prefect's wording (users match it); .delay is Millstream's too (c14).
            raise RuntimeError(
                "Unable to determine task runner to use for submission. If you are submitting "
                "a task outside of a flow, please use `.delay` to submit the task run for "
                "deferred execution."
            )
        args = self._with_self(args)
        future = self._submit(self.spec, self.spec.binder.bind(args, kwargs), wait_for, flow_ctx)
        if return_state:
            future.wait()
            return future.state
        return future

    def _submit(
        self,
        spec: TaskSpec,
        parameters: dict[str, Any],
        wait_for: list[Any] | None,
        flow_ctx: ctxmod.FlowRunContext,
    ) -> PrefectFuture[Any]:
        group = flow_ctx.group
        task_run = engine_run.new_task_run(spec, parameters, flow_ctx)
        engine_future = EngineFuture(task_run, group.loop)
        future: PrefectFuture[Any] = PrefectConcurrentFuture.engine_backed(engine_future)
        pool = group.pool
        # A runner that runs bodies elsewhere (processes, Dask) takes async bodies too.
        executor = pool if not spec.is_async or getattr(pool, "remote", False) else None

        def make() -> Coroutine[Any, Any, State]:
            return engine_run.run_task(
                spec, parameters, executor=executor, task_run=task_run, wait_for=wait_for
            )

        group.submit(engine_future, make, future)
        return future

    def map(self, *args: Any, **kwargs: Any) -> PrefectFutureList[Any]:
        """Submit one run per element of the iterable arguments (zipped; others broadcast).

        Wrap an iterable in ``unmapped(...)`` to pass it whole to every run; defaults are not
        mapped over; a future or state given whole is mapped over by its result (as Prefect).
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_ctx = ctxmod.flow_run_var.get()
        if flow_ctx is None:
            raise RuntimeError(
                "Unable to determine task runner to use for mapped task runs. If you are "
                "mapping a task outside of a flow, please provide `deferred=True` to submit "
                "the mapped task runs for deferred execution."
            )
        spec = self.spec
        bound_name = None
        if self._bound_self is not UNBOUND:
            args = (self._bound_self, *args)
            bound_name = next(iter(spec.binder.signature.parameters))
        calls = mapped_calls(spec.binder.signature, self.name, args, kwargs, bound_name)
        futures: PrefectFutureList[Any] = PrefectFutureList()
        for call in calls:
            futures.append(self._submit(spec, call, wait_for, flow_ctx))
        if return_state:
            futures.wait()
            return cast(PrefectFutureList[Any], [f.state for f in futures])
        return futures

    # -- options and hooks ----------------------------------------------------------------------
    def with_options(self, **options: Unpack[TaskOptions]) -> Task[P, R]:
        """A copy of this task with some options replaced; this task is unchanged."""
        TASK_OPTIONS.check_names(options, "Task.with_options()")
        merged = TASK_OPTIONS.carried(self, self._options)
        merged.update(options)
        copy_ = Task(self.fn, **merged)
        copy_._bound_self = self._bound_self  # a bound method's copy stays bound
        return copy_

    def _add_hook(self, hooks: list[Hook], fn: Hook) -> Hook:
        hooks.append(check_hooks("hook", [fn])[0])
        self._spec_cache = None
        return fn

    def on_completion(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_completion`` hook ``fn(task, task_run, state)``."""
        return self._add_hook(self.on_completion_hooks, fn)

    def on_failure(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_failure`` hook ``fn(task, task_run, state)``."""
        return self._add_hook(self.on_failure_hooks, fn)

    def on_running(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_running`` hook ``fn(task, task_run, state)``."""
        return self._add_hook(self.on_running_hooks, fn)

    def on_commit(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_commit`` hook ``fn(transaction)``."""
        return self._add_hook(self.on_commit_hooks, fn)

    def on_rollback(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_rollback`` hook ``fn(transaction)``."""
        return self._add_hook(self.on_rollback_hooks, fn)

    # -- background runs (millstream.task_worker) ------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Queue a run for a task worker and return its ``PrefectDistributedFuture``."""
        from millstream.task_worker import enqueue

        return enqueue(self, args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        wait_for: Any = None,
        dependencies: Any = None,
        *,
        priority: int = 0,
        idempotency_key: str | None = None,
    ) -> Any:
        """``delay`` with the arguments given apart; Millstream's ``priority`` (higher runs
        first) and ``idempotency_key`` (one run per key)."""
        from millstream.task_worker import enqueue

        return enqueue(
            self,
            args,
            kwargs,
            wait_for=wait_for,
            dependencies=dependencies,
            priority=priority,
            idempotency_key=idempotency_key,
        )

    def serve(self) -> None:
        """Serve this task's queued runs in this process until interrupted."""
        from millstream.task_worker import serve

        serve(self)


def _call_result(state: State) -> Any:
    # As in Prefect, a direct call gives back what the body returned when that was a state or
    # a collection of states (whatever the task's aggregated state), else the state's result.
    data = state.data
    if isinstance(data, State) or is_state_iterable(data):
        return data
    return state_result(state)


def _implied_persist_result(
    persist_result: bool | None,
    cache_policy: Any,
    cache_key_fn: Any,
    result_storage: Any,
    result_serializer: Any,
    result_storage_key: str | None,
) -> bool | None:
    """``persist_result`` as Prefect 3 reads it: left unset, it is True when an option only
    makes sense for a stored result (where or how to store it, or a cache) is given."""
    if persist_result is not None:
        return persist_result
    from millstream._engine.results import cache_policies as cp

    caching_policy = cache_policy not in (NotSet, None, cp.NO_CACHE, cp.NONE)
    if (
        caching_policy
        or cache_key_fn is not None
        or result_storage_key is not None
        or result_storage is not None
        or result_serializer is not None
    ):
        return True
    return None


def _resolve_cache_policy(cache_policy: Any, cache_key_fn: Any, persist_result: bool | None) -> Any:
    """The policy the engine computes cache keys with (None: no caching), as Prefect 3 does:
    no caching unless configured; ``persist_result=True`` alone caches by the DEFAULT policy."""
    if cache_key_fn is None and (
        cache_policy is None or (cache_policy is NotSet and persist_result is False)
    ):
        return None  # an explicit cache_policy=None means no caching, as in Prefect
    from millstream._engine.results import cache_policies as cp

    if cache_key_fn is not None:
        if not callable(cache_key_fn):
            raise TypeError(f"cache_key_fn must be callable, got {cache_key_fn!r}")
        if cache_policy not in (NotSet, None):
            raise ValueError(
                "Give either cache_policy or cache_key_fn, not both "
                f"(got cache_policy={cache_policy!r} and cache_key_fn={cache_key_fn!r})"
            )
        policy: Any = cp.CacheKeyFnPolicy(cache_key_fn)
    elif cache_policy is NotSet:
        # Unset: DEFAULT when results are persisted (decided per run, by the flow or setting).
        policy = cp.DEFAULT if persist_result is True else cp.DEFAULT_WHEN_PERSISTED
    elif not isinstance(cache_policy, cp.CachePolicy):
        raise TypeError(f"cache_policy must be a CachePolicy, got {cache_policy!r}")
    elif cache_policy is cp.NO_CACHE or cache_policy is cp.NONE:
        return None
    else:
        policy = cache_policy
    if persist_result is False:
        raise ValueError(
            f"persist_result=False cannot be combined with caching ({policy!r}): cached "
            "results must be persisted"
        )
    return policy


@overload
def task(__fn: Callable[P, R], /, **options: Unpack[TaskOptions]) -> Task[P, R]: ...


@overload
def task(**options: Unpack[TaskOptions]) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Any = None, /, **options: Unpack[TaskOptions]) -> Any:
    """Turn a function into a ``Task``: bare ``@task`` or ``@task(retries=2, ...)``."""
    TASK_OPTIONS.check_names(options, "task()")
    if __fn is not None:
        return Task(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorator


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A cache key from the task and its inputs (use as ``cache_key_fn``)."""
    from millstream._engine.results.cache_policies import task_input_hash as engine_task_input_hash

    return engine_task_input_hash(context, arguments)


__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]
