"""The ``@flow`` decorator and ``Flow`` objects: call, ``with_options``, hooks, validation."""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Callable
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, overload

from millstream._engine.bridge.task_runners import TaskRunner
from millstream._engine.exceptions import NotSupportedError
from millstream._engine.model.spec import Binder, FlowSpec, Hook
from millstream._engine.model.states import resolve_retry_delays
from millstream._engine.orchestrate import flow_run as engine_run
from millstream._options import check_hooks, check_timeout, merge
from millstream._sync import run_sync

P = ParamSpec("P")
R = TypeVar("R")

_OPTION_NAMES = (
    "name",
    "version",
    "retries",
    "retry_delay_seconds",
    "description",
    "flow_run_name",
    "task_runner",
    "timeout_seconds",
    "validate_parameters",
    "persist_result",
    "result_storage",
    "result_serializer",
    "cache_result_in_memory",
    "log_prints",
    "on_completion",
    "on_failure",
    "on_cancellation",
    "on_crashed",
    "on_running",
)


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


class Flow(Generic[P, R]):
    """A function whose calls are recorded as flow runs: the unit of orchestration."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
        task_runner: TaskRunner | None = None,
        description: str | None = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: list[Hook] | None = None,
        on_failure: list[Hook] | None = None,
        on_cancellation: list[Hook] | None = None,
        on_crashed: list[Hook] | None = None,
        on_running: list[Hook] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        from millstream._engine.settings import get_current_settings

        settings = get_current_settings()
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Flow name must be a non-empty string, got {self.name!r}")
        for bad in ("/", "%", "&", ">", "<"):
            if bad in self.name:
                raise ValueError(
                    f"Flow name {self.name!r} contains the forbidden character {bad!r}"
                )
        self.version = version
        self.description = description if description is not None else inspect.getdoc(fn)
        if flow_run_name is not None and not (
            isinstance(flow_run_name, str) or callable(flow_run_name)
        ):
            raise TypeError(f"flow_run_name must be a string or a callable, got {flow_run_name!r}")
        self.flow_run_name = flow_run_name
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            if isinstance(task_runner, type) and issubclass(task_runner, TaskRunner):
                task_runner = task_runner()
            else:
                raise TypeError(f"task_runner must be a TaskRunner, got {task_runner!r}")
        self.task_runner = task_runner
        self.timeout_seconds = check_timeout(timeout_seconds)
        self.should_validate_parameters = bool(validate_parameters)
        if retries is None:
            retries = settings.flows.default_retries
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
        self.retries = retries
        if retry_delay_seconds is None:
            retry_delay_seconds = settings.flows.default_retry_delay_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self._retry_delays = resolve_retry_delays(retry_delay_seconds, retries)
        if persist_result is None and (result_storage is not None or result_serializer is not None):
            # As in Prefect 3: saying where or how to store the result means storing it.
            persist_result = True
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.on_completion_hooks = check_hooks("on_completion", on_completion)
        self.on_failure_hooks = check_hooks("on_failure", on_failure)
        self.on_cancellation_hooks = check_hooks("on_cancellation", on_cancellation)
        self.on_crashed_hooks = check_hooks("on_crashed", on_crashed)
        self.on_running_hooks = check_hooks("on_running", on_running)
        self.isasync = inspect.iscoroutinefunction(fn)
        self._binder = Binder(fn)
        self._options = {
            "name": name,
            "version": version,
            "flow_run_name": flow_run_name,
            "retries": retries,
            "retry_delay_seconds": retry_delay_seconds,
            "task_runner": task_runner,
            "description": description,
            "timeout_seconds": timeout_seconds,
            "validate_parameters": validate_parameters,
            "persist_result": persist_result,
            "result_storage": result_storage,
            "result_serializer": result_serializer,
            "cache_result_in_memory": cache_result_in_memory,
            "log_prints": log_prints,
        }
        self._spec_cache: FlowSpec | None = None
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
                name=self.name,
                is_async=self.isasync,
                binder=self._binder,
                owner=self,
                description=self.description,
                version=self.version,
                flow_run_name=self.flow_run_name,
                task_runner=self.task_runner,
                timeout_seconds=self.timeout_seconds,
                validate_parameters=self.should_validate_parameters,
                retries=self.retries,
                retry_delays=self._retry_delays,
                persist_result=self.persist_result,
                result_storage=self.result_storage,
                result_serializer=self.result_serializer,
                cache_result_in_memory=self.cache_result_in_memory,
                log_prints=self.log_prints,
                entrypoint=_entrypoint(self.fn),
                on_completion=tuple(self.on_completion_hooks),
                on_failure=tuple(self.on_failure_hooks),
                on_cancellation=tuple(self.on_cancellation_hooks),
                on_crashed=tuple(self.on_crashed_hooks),
                on_running=tuple(self.on_running_hooks),
            )
        return spec

    # -- calling --------------------------------------------------------------------------------
    @overload
    def __call__(self: Flow[P, NoReturn], *args: P.args, **kwargs: P.kwargs) -> None: ...

    @overload
    def __call__(self: Flow[P, R], *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the flow and return its result (a coroutine to await for an async flow).

        ``return_state=True`` returns the final State instead of raising on failure.
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_run_id = kwargs.pop("flow_run_id", None)
        if wait_for is not None:
            raise TypeError("wait_for is only supported for subflows submitted as tasks")
        spec = self.spec
        parameters = spec.binder.bind(args, kwargs)
        run_id = _run_id(flow_run_id)
        if spec.is_async:
            return self._acall(spec, parameters, return_state, run_id)
        state = run_sync(
            lambda caller: engine_run.run_flow(
                spec, parameters, executor=caller, flow_run_id=run_id
            )
        )
        return state if return_state else engine_run.flow_result(state)

    async def _acall(
        self,
        spec: FlowSpec,
        parameters: dict[str, Any],
        return_state: bool,
        flow_run_id: uuid.UUID | None,
    ) -> Any:
        state = await engine_run.run_flow(spec, parameters, executor=None, flow_run_id=flow_run_id)
        return state if return_state else engine_run.flow_result(state)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Bind ``parameters`` to the flow's signature, apply defaults, coerce by annotation.

        Raises ``ParameterTypeError`` naming each bad parameter (``ParameterBindError`` for
        unknown or missing ones).
        """
        from millstream._engine.validation import validate_parameters

        bound = self._binder.bind((), parameters)
        return validate_parameters(self.fn, bound)

    # -- options and hooks ----------------------------------------------------------------------
    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options replaced; this flow is unchanged."""
        unknown = set(options) - set(_OPTION_NAMES)
        if unknown:
            raise TypeError(f"Flow.with_options() got unknown option(s): {sorted(unknown)}")
        merged = merge(self._options, options)
        if "name" not in options:
            merged["name"] = self.name
        for hook in ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running"):
            merged[hook] = options.get(hook, getattr(self, f"{hook}_hooks"))
        return Flow(self.fn, **merged)

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
    def to_deployment(self, name: str, **options: Any) -> Any:
        """A ``RunnerDeployment`` of this flow (interval=, cron=, rrule=, schedules=,
        parameters=, tags=, description=, version=, paused=, enforce_parameter_schema=)."""
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
    def from_source(cls, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: loading flows from remote storage is a server feature."""
        raise NotSupportedError(
            "Flow.from_source() loads flows from remote storage for Prefect's workers; "
            "Millstream runs flows imported in the current process."
        )

    def visualize(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Not available: flow visualisation needs graphviz and Prefect's UI."""
        raise NotSupportedError("Flow.visualize() is not part of the embedded engine.")

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={self.fn.__qualname__})"


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[[], str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | None = None,
    task_runner: TaskRunner | None = None,
    description: str | None = None,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    cache_result_in_memory: bool = True,
    log_prints: bool | None = None,
    on_completion: list[Hook] | None = None,
    on_failure: list[Hook] | None = None,
    on_cancellation: list[Hook] | None = None,
    on_crashed: list[Hook] | None = None,
    on_running: list[Hook] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Any = None, **options: Any) -> Any:
    """Turn a function into a ``Flow``: bare ``@flow`` or ``@flow(name=..., retries=...)``."""
    unknown = set(options) - set(_OPTION_NAMES)
    if unknown:
        raise TypeError(f"flow() got unexpected keyword argument(s): {sorted(unknown)}")
    if __fn is not None:
        return Flow(__fn, **options)

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator


__all__ = ["Flow", "flow"]
