"""Every ``@task`` and ``@flow`` option declared once: its type, default, check and spec field.

``TaskOptions`` and ``FlowOptions`` are the only place an option is named. Each key's type is
what mypy checks callers against (``**options: Unpack[TaskOptions]`` types the decorators,
``__init__`` and ``with_options``); the ``Option`` in its ``Annotated`` metadata is what the
``OptionTable`` built from it reads at run time: how a missing value is filled, how a given one is
checked and normalised, the attribute the Task/Flow keeps it in, the engine spec field it feeds and
whether it is a hook wrapped for the engine. Adding a Prefect option is one line here (plus the
spec field if the engine needs it).
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict, get_type_hints

import anyio.to_thread

from millstream._engine.bridge.task_runners import TaskRunner
from millstream._engine.model.spec import Hook, Hooks


class _NotSetType:
    """Marks an option the user did not give (None can be a meaningful value)."""

    _instance: _NotSetType | None = None

    def __new__(cls) -> _NotSetType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotSet"

    def __bool__(self) -> bool:
        return False


NotSet: Any = _NotSetType()


# -- checks: each takes the option's name and the given value, returns the value kept -----------
def check_hooks(kind: str, hooks: Iterable[Callable[..., Any]] | None) -> list[Callable[..., Any]]:
    """The hooks as a list; a non-callable hook raises ``TypeError`` naming it."""
    if hooks is None:
        return []
    if callable(hooks):
        raise TypeError(f"{kind} expects a list of callables, got the callable {hooks!r}")
    result = list(hooks)
    for hook in result:
        if not callable(hook):
            raise TypeError(f"{kind} hooks must be callable, got {hook!r}")
    return result


def check_timeout(value: float | None) -> float | None:
    """``timeout_seconds`` as a float; zero, negative or non-numbers raise ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"timeout_seconds must be a positive number, got {value!r}")
    return float(value)


def _timeout(name: str, value: Any) -> float | None:
    return check_timeout(value)


def _hooks(name: str, value: Any) -> list[Hook]:
    return check_hooks(name, value)


def _run_name(name: str, value: Any) -> Any:
    if value is not None and not (isinstance(value, str) or callable(value)):
        raise TypeError(f"{name} must be a string or a callable, got {value!r}")
    return value


def _optional_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")
    return value


def _not_negative(name: str, value: Any) -> Any:
    if value is not None and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def _timedelta(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, dt.timedelta):
        raise TypeError(f"{name} must be a datetime.timedelta, got {value!r}")
    return value


def _tags(name: str, value: Any) -> set[str]:
    if isinstance(value, str):
        raise TypeError(f"tags must be an iterable of strings, not the string {value!r}")
    return set(value or ())


def _retries(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"retries must be a non-negative integer, got {value!r}")
    return value


# Left unset, retries and their delays come from the settings current when the task or flow is
# defined (PREFECT_TASK_DEFAULT_RETRIES and friends).
def _task_retries(name: str, value: Any) -> int:
    return _retries(_settings().tasks.default_retries if value is None else value)


def _flow_retries(name: str, value: Any) -> int:
    return _retries(_settings().flows.default_retries if value is None else value)


def _task_retry_delay(name: str, value: Any) -> Any:
    return _settings().tasks.default_retry_delay_seconds if value is None else value


def _flow_retry_delay(name: str, value: Any) -> Any:
    return _settings().flows.default_retry_delay_seconds if value is None else value


def _settings() -> Any:
    from millstream._engine.settings import get_current_settings

    return get_current_settings()


def _task_name(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"Task name must be a string, got {value!r}")
    return value


def _flow_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"Flow name must be a non-empty string, got {value!r}")
    for bad in ("/", "%", "&", ">", "<"):
        if bad in value:
            raise ValueError(f"Flow name {value!r} contains the forbidden character {bad!r}")
    return value


def _task_runner(name: str, value: Any) -> TaskRunner | None:
    if value is None or isinstance(value, TaskRunner):
        return value
    if isinstance(value, type) and issubclass(value, TaskRunner):
        return value()  # a runner class is accepted, as in Prefect
    raise TypeError(f"task_runner must be a TaskRunner, got {value!r}")


def _as_bool(name: str, value: Any) -> bool:
    return bool(value)


# -- fills: the value used when an option is not given (or empty), from the function ------------
def _callable_name(fn: Callable[..., Any]) -> str:
    # A callable object or a functools.partial has no __name__: Prefect names it by its type.
    return getattr(fn, "__name__", None) or type(fn).__name__


def _fn_name(value: Any, fn: Callable[..., Any]) -> Any:
    return value or _callable_name(fn)


def _fn_flow_name(value: Any, fn: Callable[..., Any]) -> Any:
    return value or _callable_name(fn).replace("_", "-")


def _fn_doc(value: Any, fn: Callable[..., Any]) -> Any:
    return inspect.getdoc(fn) if value is None else value


@dataclass(frozen=True, slots=True)
class Option:
    """How one option is read and where it goes.

    ``default``: the value when not given. ``fill(value, fn)``: the value to use given the
    function (a default name or description). ``check(name, value)``: validates (raising the
    error users see) and returns the value the Task/Flow keeps. ``attr``: that attribute's name
    (default: the option's). ``spec``: the TaskSpec/FlowSpec field it feeds (True: the same name;
    False: the class derives the spec field itself), ``to_spec`` converting it. ``wrap``: the
    ``Hooks`` field its wrapped hooks go to. ``carry``: ``with_options`` starts from the current
    attribute (hooks added by decorator, the resolved name) rather than from the value given.
    """

    default: Any = None
    fill: Callable[[Any, Callable[..., Any]], Any] | None = None
    check: Callable[[str, Any], Any] | None = None
    attr: str = ""
    spec: bool | str = True
    to_spec: Callable[[Any], Any] | None = None
    wrap: str | None = None
    carry: bool = False


def _hook_option(name: str, *, raw: bool = False) -> Option:
    # The engine awaits the wrapped hooks (spec.hooks); only transaction hooks, which a
    # transaction calls as they are, also go to the spec unwrapped (``raw``).
    return Option(
        check=_hooks,
        attr=f"{name}_hooks",
        spec=name if raw else False,
        to_spec=tuple,
        wrap=name,
        carry=True,
    )


_ON_COMPLETION = _hook_option("on_completion")
_ON_FAILURE = _hook_option("on_failure")
_ON_RUNNING = _hook_option("on_running")
_ON_COMMIT = _hook_option("on_commit", raw=True)
_ON_ROLLBACK = _hook_option("on_rollback", raw=True)
_ON_CANCELLATION = _hook_option("on_cancellation")
_ON_CRASHED = _hook_option("on_crashed")
_TIMEOUT = Option(check=_timeout)
_DESCRIPTION = Option(fill=_fn_doc)
_RUN_NAME = Option(check=_run_name)
_IN_MEMORY = Option(default=True)
_SAME = Option()


class TaskOptions(TypedDict, total=False):
    """The options of ``@task``, ``Task(...)`` and ``Task.with_options`` (Prefect 3's names)."""

    name: Annotated[str | None, Option(fill=_fn_name, check=_task_name, carry=True)]
    description: Annotated[str | None, _DESCRIPTION]
    tags: Annotated[Iterable[str] | None, Option(check=_tags, to_spec=frozenset, carry=True)]
    version: Annotated[str | None, _SAME]
    # Derived: the engine's policy is resolved with cache_key_fn and persist_result.
    cache_policy: Annotated[Any, Option(default=NotSet, spec=False)]
    cache_key_fn: Annotated[Callable[..., str | None] | None, _SAME]
    cache_expiration: Annotated[dt.timedelta | None, Option(check=_timedelta)]
    task_run_name: Annotated[str | Callable[[], str] | None, _RUN_NAME]
    retries: Annotated[int | None, Option(check=_task_retries)]
    retry_delay_seconds: Annotated[
        float | list[float] | Callable[[int], list[float]] | None,
        Option(check=_task_retry_delay, spec=False),  # derived: spec.retry_delays
    ]
    retry_jitter_factor: Annotated[float | None, Option(check=_not_negative)]
    persist_result: Annotated[bool | None, _SAME]  # then implied by the result options
    result_storage: Annotated[Any, _SAME]
    result_serializer: Annotated[Any, _SAME]
    result_storage_key: Annotated[str | None, _SAME]
    cache_result_in_memory: Annotated[bool, _IN_MEMORY]
    timeout_seconds: Annotated[float | None, _TIMEOUT]
    log_prints: Annotated[bool | None, _SAME]
    refresh_cache: Annotated[bool | None, _SAME]
    on_completion: Annotated[list[Hook] | None, _ON_COMPLETION]
    on_failure: Annotated[list[Hook] | None, _ON_FAILURE]
    on_running: Annotated[list[Hook] | None, _ON_RUNNING]
    on_commit: Annotated[list[Hook] | None, _ON_COMMIT]
    on_rollback: Annotated[list[Hook] | None, _ON_ROLLBACK]
    retry_condition_fn: Annotated[
        Callable[..., bool] | None, Option(check=_optional_callable, wrap="retry_condition")
    ]


class FlowOptions(TypedDict, total=False):
    """The options of ``@flow``, ``Flow(...)`` and ``Flow.with_options`` (Prefect 3's names)."""

    name: Annotated[str | None, Option(fill=_fn_flow_name, check=_flow_name, carry=True)]
    version: Annotated[str | None, _SAME]
    flow_run_name: Annotated[str | Callable[[], str] | None, _RUN_NAME]
    retries: Annotated[int | None, Option(check=_flow_retries, carry=True)]
    retry_delay_seconds: Annotated[
        float | None,
        Option(check=_flow_retry_delay, spec=False, carry=True),  # derived: spec.retry_delays
    ]
    task_runner: Annotated[TaskRunner | None, Option(check=_task_runner, carry=True)]
    description: Annotated[str | None, _DESCRIPTION]
    timeout_seconds: Annotated[float | None, _TIMEOUT]
    validate_parameters: Annotated[
        bool, Option(default=True, check=_as_bool, attr="should_validate_parameters")
    ]
    # Then implied by result_storage / result_serializer.
    persist_result: Annotated[bool | None, Option(carry=True)]
    result_storage: Annotated[Any, _SAME]
    result_serializer: Annotated[Any, _SAME]
    cache_result_in_memory: Annotated[bool, _IN_MEMORY]
    log_prints: Annotated[bool | None, _SAME]
    on_completion: Annotated[list[Hook] | None, _ON_COMPLETION]
    on_failure: Annotated[list[Hook] | None, _ON_FAILURE]
    on_cancellation: Annotated[list[Hook] | None, _ON_CANCELLATION]
    on_crashed: Annotated[list[Hook] | None, _ON_CRASHED]
    on_running: Annotated[list[Hook] | None, _ON_RUNNING]


class OptionTable:
    """The options of one ``TypedDict`` read back from its annotations, and what they drive."""

    def __init__(self, kind: str, options: type) -> None:
        self.kind = kind
        hints = get_type_hints(options, include_extras=True)
        self.options: dict[str, Option] = {}
        for name, hint in hints.items():
            found = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Option)]
            if len(found) != 1:
                raise TypeError(f"{options.__name__}.{name} needs exactly one Option")
            self.options[name] = found[0]
        self.names = frozenset(self.options)
        # Flattened once: reading options runs for every Task/Flow made (and every method task
        # bound by __get__), so the loop touches no descriptor attributes.
        self._read = [
            (name, o.default, o.fill, o.check, o.attr or name) for name, o in self.options.items()
        ]
        # (option, attribute, spec field, converter) for the options copied into the spec.
        self._to_spec = [
            (name, o.attr or name, name if o.spec is True else o.spec, o.to_spec)
            for name, o in self.options.items()
            if o.spec is not False
        ]
        self._wrapped = [(o.attr or name, o.wrap) for name, o in self.options.items() if o.wrap]

    def check_names(self, given: Iterable[str], where: str) -> None:
        """Raise ``TypeError`` naming the first option ``where`` does not take (Python's and
        Prefect's wording: "... got an unexpected keyword argument 'x'")."""
        unknown = [name for name in given if name not in self.names]
        if unknown:
            raise TypeError(f"{where} got an unexpected keyword argument {unknown[0]!r}")

    def read(self, given: Mapping[str, Any], fn: Callable[..., Any]) -> dict[str, Any]:
        """Every option's kept value (by attribute name): defaults filled, checks run."""
        if not self.names.issuperset(given):
            self.check_names(given, f"{self.kind}()")
        values: dict[str, Any] = {}
        get = given.get
        for name, default, fill, check, attr in self._read:
            value = get(name, default)
            if fill is not None:
                value = fill(value, fn)
            if check is not None:
                value = check(name, value)
            values[attr] = value
        return values

    def carried(self, obj: Any, given: Mapping[str, Any]) -> dict[str, Any]:
        """The options ``with_options`` starts from: as first given, with the carried ones
        (hooks, name, ...) taken from the object as it is now."""
        merged = dict(given)
        for name, option in self.options.items():
            if option.carry:
                value = getattr(obj, option.attr or name)
                merged[name] = value.copy() if isinstance(value, list | set) else value
        return merged

    def spec_fields(self, obj: Any) -> dict[str, Any]:
        """The spec fields fed straight from the object's attributes, plus ``hooks``."""
        fields: dict[str, Any] = {}
        for _, attr, spec_field, convert in self._to_spec:
            value = getattr(obj, attr)
            fields[str(spec_field)] = value if convert is None else convert(value)
        wrapped: dict[str, Any] = {}
        for attr, hooks_field in self._wrapped:
            value = getattr(obj, attr)
            if hooks_field == "retry_condition":
                wrapped[hooks_field] = None if value is None else wrap_condition(value)
            else:
                wrapped[hooks_field] = tuple(wrap_hook(hook) for hook in value)
        fields["hooks"] = Hooks(**wrapped)
        return fields


# -- hooks wrapped for the engine ---------------------------------------------------------------
def wrap_hook(hook: Hook) -> Callable[..., Awaitable[None]]:
    """``hook`` as an ``async def``: awaited if async, else run on a worker thread (an awaitable
    it returns is awaited too). Exceptions propagate; ``__wrapped__`` is the user's hook."""
    if inspect.iscoroutinefunction(hook):

        async def call_async(*args: Any) -> None:
            await hook(*args)

        return functools.update_wrapper(call_async, hook)

    async def call_in_thread(*args: Any) -> None:
        result = await anyio.to_thread.run_sync(_call, hook, args)
        if inspect.isawaitable(result):
            await result

    return functools.update_wrapper(call_in_thread, hook)


def wrap_condition(condition: Callable[..., Any]) -> Callable[..., Awaitable[bool]]:
    """``retry_condition_fn`` as an ``async def`` returning a bool (sync ones on a thread)."""
    if inspect.iscoroutinefunction(condition):

        async def call_async(*args: Any) -> bool:
            return bool(await condition(*args))

        return functools.update_wrapper(call_async, condition)

    async def call_in_thread(*args: Any) -> bool:
        result = await anyio.to_thread.run_sync(_call, condition, args)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    return functools.update_wrapper(call_in_thread, condition)


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args)


TASK_OPTIONS = OptionTable("task", TaskOptions)
FLOW_OPTIONS = OptionTable("flow", FlowOptions)
