"""The ``@flow`` decorator and ``Flow`` objects: call, ``with_options``, hooks, validation."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Callable
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, Unpack, overload

from millstream._binding import UNBOUND, MethodBinding
from millstream._engine.bridge.task_runners import TaskRunner
from millstream._engine.exceptions import NotSupportedError
from millstream._engine.model.spec import Binder, FlowSpec, Hook
from millstream._engine.model.states import raise_interrupt, resolve_retry_delays
from millstream._engine.orchestrate import flow_run as engine_run
from millstream._options import FLOW_OPTIONS, FlowOptions, check_hooks
from millstream._sync import in_async_context, run_sync

P = ParamSpec("P")
R = TypeVar("R")


def _entrypoint(fn: Callable[..., Any]) -> str | None:
    # Where recovery can import the flow from: "module:qualname", or "path:qualname" for a
    # flow defined in a script run as `python file.py`.
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if module is None or qualname is None or "<locals>" in qualname:
        return None
    if module == "__main__":
        try:
            return f"{os.path.abspath(inspect.getfile(fn))}:{qualname}"
        except TypeError:
            return None
    return f"{module}:{qualname}"


def _run_id(value: Any) -> uuid.UUID | None:
    # A caller-chosen run id makes a call idempotent: calling again resumes or returns the
    # recorded result. Any string works as a key; it maps to a stable UUID.
    if value is None or isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or not value:
        raise TypeError(f"flow_run_id must be a UUID or a non-empty string, got {value!r}")
    try:
        return uuid.UUID(value)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:flow-run:{value}")


class Flow(MethodBinding, Generic[P, R]):
    """A function whose calls are recorded as flow runs: the unit of orchestration."""

    _kind = "Flow"

    fn: Callable[P, R]
    # The options' attributes (set from FLOW_OPTIONS in __init__), for type checkers.
    name: str
    version: str | None
    flow_run_name: str | Callable[[], str] | None
    retries: int
    retry_delay_seconds: float
    task_runner: TaskRunner | None
    description: str | None
    timeout_seconds: float | None
    should_validate_parameters: bool
    persist_result: bool | None
    result_storage: Any
    result_serializer: Any
    cache_result_in_memory: bool
    log_prints: bool | None
    on_completion_hooks: list[Hook]
    on_failure_hooks: list[Hook]
    on_cancellation_hooks: list[Hook]
    on_crashed_hooks: list[Hook]
    on_running_hooks: list[Hook]

    def __init__(self, fn: Callable[P, R], **options: Unpack[FlowOptions]) -> None:
        if not callable(fn):
            raise TypeError("'fn' must be callable")
        self.fn = fn
        for attr, value in FLOW_OPTIONS.read(options, fn).items():
            setattr(self, attr, value)
        self._retry_delays = resolve_retry_delays(self.retry_delay_seconds, self.retries)
        if self.persist_result is None and (
            self.result_storage is not None or self.result_serializer is not None
        ):
            # As in Prefect 3: saying where or how to store the result means storing it.
            self.persist_result = True
        self.isasync = inspect.iscoroutinefunction(fn)
        self._binder = Binder(fn)
        self._options: dict[str, Any] = dict(options)  # as given: with_options starts here
        self._spec_cache: FlowSpec | None = None
        self._bound_self: Any = UNBOUND
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", self.name)
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    @property
    def spec(self) -> FlowSpec:
        """The frozen spec the engine runs (rebuilt after a hook decorator adds a hook)."""
        spec = self._spec_cache
        if spec is None:
            spec = self._spec_cache = FlowSpec(
                fn=self.fn,
                is_async=self.isasync,
                binder=self._binder,
                owner=self,
                retry_delays=self._retry_delays,
                entrypoint=_entrypoint(self.fn),
                **FLOW_OPTIONS.spec_fields(self),
            )
        return spec

    # -- calling --------------------------------------------------------------------------------
    @overload
    def __call__(self: Flow[P, NoReturn], *args: P.args, **kwargs: P.kwargs) -> None: ...

    @overload
    def __call__(self: Flow[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the flow and return its result (a coroutine to await for an async flow).

        ``return_state=True`` returns the final State instead of raising on failure;
        ``wait_for`` lists futures to wait for first (a failed one: the run does not start).
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_run_id = kwargs.pop("flow_run_id", None)
        args = self._with_self(args)
        spec = self.spec
        parameters = spec.binder.bind(args, kwargs)
        run_id = _run_id(flow_run_id)
        if spec.is_async:
            return self._acall(spec, parameters, return_state, run_id, wait_for)
        state = run_sync(
            lambda caller: engine_run.run_flow(
                spec, parameters, executor=caller, flow_run_id=run_id, wait_for=wait_for
            )
        )
        return raise_interrupt(state) if return_state else engine_run.flow_result(state)

    async def _acall(
        self,
        spec: FlowSpec,
        parameters: dict[str, Any],
        return_state: bool,
        flow_run_id: uuid.UUID | None,
        wait_for: list[Any] | None = None,
    ) -> Any:
        state = await engine_run.run_flow(
            spec, parameters, executor=None, flow_run_id=flow_run_id, wait_for=wait_for
        )
        return raise_interrupt(state) if return_state else engine_run.flow_result(state)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Bind ``parameters`` to the flow's signature, apply defaults, coerce by annotation.

        Raises ``ParameterTypeError`` naming each bad parameter (``ParameterBindError`` for
        unknown or missing ones).
        """
        from millstream._engine.validation import validate_parameters

        bound = self._binder.bind((), parameters)
        return validate_parameters(self.fn, bound)

    # -- options and hooks ----------------------------------------------------------------------
    def with_options(self, **options: Unpack[FlowOptions]) -> Flow[P, R]:
        """A copy of this flow with some options replaced; this flow is unchanged."""
        FLOW_OPTIONS.check_names(options, "Flow.with_options()")
        merged = FLOW_OPTIONS.carried(self, self._options)
        merged.update(options)
        copy_ = Flow(self.fn, **merged)
        copy_._bound_self = self._bound_self  # a bound method's copy stays bound
        return copy_

    def _add_hook(self, hooks: list[Hook], fn: Hook) -> Hook:
        hooks.append(check_hooks("hook", [fn])[0])
        self._spec_cache = None
        return fn

    def on_completion(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_completion`` hook ``fn(flow, flow_run, state)``."""
        return self._add_hook(self.on_completion_hooks, fn)

    def on_failure(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_failure`` hook ``fn(flow, flow_run, state)``."""
        return self._add_hook(self.on_failure_hooks, fn)

    def on_cancellation(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_cancellation`` hook ``fn(flow, flow_run, state)``."""
        return self._add_hook(self.on_cancellation_hooks, fn)

    def on_crashed(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_crashed`` hook ``fn(flow, flow_run, state)``."""
        return self._add_hook(self.on_crashed_hooks, fn)

    def on_running(self, fn: Hook) -> Hook:
        """Decorator: add an ``on_running`` hook ``fn(flow, flow_run, state)``."""
        return self._add_hook(self.on_running_hooks, fn)

    # -- Prefect APIs that need a server or the cloud --------------------------------------------
    async def ato_deployment(self, name: str, **options: Any) -> Any:
        """A ``RunnerDeployment`` of this flow (interval=, cron=, rrule=, schedules=,
        parameters=, tags=, description=, version=, paused=, enforce_parameter_schema=,
        concurrency_limit=); ``triggers=`` raises NotSupportedError."""
        from millstream.deployments import make_deployment

        return make_deployment(self, name, **options)

    def to_deployment(self, name: str, **options: Any) -> Any:
        """Sync-compatible ``ato_deployment``: awaitable in async code (as Prefect's), the
        deployment itself in sync code."""
        forced = options.pop("_sync", None)
        if not (bool(forced) if forced is not None else not in_async_context()):
            return self.ato_deployment(name, **options)
        from millstream.deployments import make_deployment

        return make_deployment(self, name, **options)

    def serve(
        self,
        name: str | None = None,
        *,
        limit: int | None = None,
        pause_on_shutdown: bool = True,
        print_starting_message: bool = True,
        webserver: bool = False,
        **options: Any,
    ) -> None:
        """Serve this flow as a deployment until interrupted (schedules as in to_deployment)."""
        from millstream.deployments import serve

        serve(
            self.to_deployment(name or self.name, **options),
            limit=limit,
            pause_on_shutdown=pause_on_shutdown,
            print_starting_message=print_starting_message,
            webserver=webserver,
        )

    def deploy(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: deploying to work pools needs Prefect's server."""
        raise NotSupportedError(
            "Flow.deploy() builds images and registers with work pools on Prefect's server; "
            "Millstream is embedded: use flow.serve() or flow.to_deployment().apply()."
        )

    @classmethod
    def from_source(cls, source: Any, entrypoint: str) -> Any:
        """The flow at ``entrypoint`` in the local directory ``source`` (sync-compatible; a
        remote URL raises ``NotSupportedError``)."""
        from millstream._flow_loading import afrom_source
        from millstream._sync import dispatch

        return dispatch(afrom_source)(source, entrypoint)

    def visualize(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: flow visualisation needs graphviz and Prefect's UI."""
        raise NotSupportedError("Flow.visualize() is not part of the embedded engine.")

    def generate_mermaid_graph(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: drawing a flow's task graph runs its body with tasks stubbed out."""
        raise NotSupportedError(
            "Flow.generate_mermaid_graph() is not part of the embedded engine; run the flow and "
            "read its task runs (and their upstream runs) with get_client(), or the dashboard."
        )


@overload
def flow(__fn: Callable[P, R], /, **options: Unpack[FlowOptions]) -> Flow[P, R]: ...


@overload
def flow(**options: Unpack[FlowOptions]) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, /, **options: Unpack[FlowOptions]) -> Any:
    """Turn a function into a ``Flow``: bare ``@flow`` or ``@flow(name=..., retries=...)``."""
    FLOW_OPTIONS.check_names(options, "flow()")
    if __fn is not None:
        return Flow(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator


# Prefect's loaders (load_flow_from_entrypoint, safe_load_..., load_flow_arguments_...).
from millstream._flow_loading import *  # noqa: E402, F403

__all__ = ["Flow", "flow"]
