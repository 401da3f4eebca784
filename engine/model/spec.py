"""Frozen task and flow specifications built at decoration time, and fast argument binding."""

from __future__ import annotations

import datetime as dt
import inspect
import operator
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from millstream._engine.exceptions import ParameterBindError
from millstream._engine.model.states import State

Hook = Callable[..., Any]

# Hooks as the engine awaits them: wrapped once when the spec is built (by the sdk), so that
# orchestration never asks whether a user's hook is sync or async nor where to run it. A wrapped
# hook raises what the user's hook raised; keeping that from changing the run's state (and
# logging it) stays the orchestrator's job. Each wrapper keeps the user's hook as __wrapped__
# and its __name__ (for log lines).
StateHook = Callable[[Any, Any, State], Awaitable[None]]
"""``await hook(task_or_flow, task_run_or_flow_run, state)``: a wrapped state hook."""
TransactionHook = Callable[[Any], Awaitable[None]]
"""``await hook(transaction)``: a wrapped ``on_commit`` / ``on_rollback`` hook."""
RetryCondition = Callable[[Any, Any, State], Awaitable[bool]]
"""``await condition(task, task_run, state) -> bool``: a wrapped ``retry_condition_fn``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """A task's or flow's hooks, each already an awaitable callable, in the order given.

    Tasks use on_running, on_completion, on_failure, on_commit, on_rollback and
    retry_condition; flows use on_running, on_completion, on_failure, on_cancellation and
    on_crashed. The others stay empty.
    """

    on_running: tuple[StateHook, ...] = ()
    on_completion: tuple[StateHook, ...] = ()
    on_failure: tuple[StateHook, ...] = ()
    on_cancellation: tuple[StateHook, ...] = ()
    on_crashed: tuple[StateHook, ...] = ()
    on_commit: tuple[TransactionHook, ...] = ()
    on_rollback: tuple[TransactionHook, ...] = ()
    retry_condition: RetryCondition | None = None


NO_HOOKS = Hooks()


class Binder:
    """Binds call arguments to a function's parameters; fast for plain positional calls."""

    __slots__ = ("_fast_names", "_fn_name", "_getter", "signature")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        self._fn_name = getattr(fn, "__name__", repr(fn))
        params = list(self.signature.parameters.values())
        simple = all(
            p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY) and p.default is p.empty
            for p in params
        )
        # When every parameter is plain and required, binding is a zip: the common case of
        # small tasks called in tight loops skips inspect's general (and slower) binder.
        self._fast_names: tuple[str, ...] | None = tuple(p.name for p in params) if simple else None
        names = self._fast_names
        self._getter: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = None
        if names:
            if len(names) == 1:
                only = names[0]
                self._getter = lambda parameters: (parameters[only],)
            else:
                self._getter = operator.itemgetter(*names)
        elif names is not None:
            self._getter = lambda parameters: ()

    def bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Return the parameters (defaults applied) or raise ``ParameterBindError``."""
        names = self._fast_names
        if names is not None and not kwargs and len(args) == len(names):
            return dict(zip(names, args, strict=True))
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError.from_bind_failure(
                self._fn_name, exc, args, dict(kwargs), str(self.signature)
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def call_args(self, parameters: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Split bound parameters back into ``(args, kwargs)`` for calling the function."""
        getter = self._getter
        if getter is not None:
            return getter(parameters), {}
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        items = self.signature.parameters.items()
        # Extra positional values (*args) need every positional slot before them filled.
        fill = any(p.kind is p.VAR_POSITIONAL and parameters.get(n) for n, p in items)
        by_name = False  # set once a positional slot is skipped: later values go by keyword
        for name, param in items:
            kind = param.kind
            if kind is param.VAR_POSITIONAL:
                args.extend(parameters.get(name, ()))
            elif kind is param.VAR_KEYWORD:
                kwargs.update(parameters.get(name, {}))
            elif kind is param.KEYWORD_ONLY:
                if name in parameters:
                    kwargs[name] = parameters[name]
            elif name in parameters:
                if by_name:
                    kwargs[name] = parameters[name]
                else:
                    args.append(parameters[name])
            elif param.default is not param.empty and (fill or kind is param.POSITIONAL_ONLY):
                # A positional-only slot cannot be skipped by keyword: pass its default.
                args.append(param.default)
            else:
                by_name = True
        return tuple(args), kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """Everything the engine needs to run a task, fixed when the task is defined."""

    fn: Callable[..., Any]
    name: str
    task_key: str
    is_async: bool
    # A digest of ``fn``'s code, recorded with each task run (None: the engine computes it).
    code_fingerprint: str | None = None
    binder: Binder
    owner: Any = None
    description: str | None = None
    version: str | None = None
    tags: frozenset[str] = frozenset()
    task_run_name: str | Callable[[], str] | None = None
    retries: int = 0
    retry_delays: float | list[float] = 0.0
    retry_jitter_factor: float | None = None
    retry_condition_fn: Callable[..., bool] | None = None
    timeout_seconds: float | None = None
    log_prints: bool | None = None
    cache_policy: Any = None
    cache_key_fn: Callable[..., str | None] | None = None
    cache_expiration: dt.timedelta | None = None
    refresh_cache: bool | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None
    result_storage_key: str | None = None
    cache_result_in_memory: bool = True
    # Called as they are by the task's transaction (``orchestrate.transactions``).
    on_commit: tuple[Hook, ...] = ()
    on_rollback: tuple[Hook, ...] = ()
    # Every hook and retry_condition_fn, wrapped to be awaited (see Hooks).
    hooks: Hooks = NO_HOOKS
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowSpec:
    """Everything the engine needs to run a flow, fixed when the flow is defined."""

    fn: Callable[..., Any]
    name: str
    is_async: bool
    binder: Binder
    owner: Any = None
    description: str | None = None
    version: str | None = None
    flow_run_name: str | Callable[[], str] | None = None
    task_runner: Any = None
    timeout_seconds: float | None = None
    validate_parameters: bool = True
    retries: int = 0
    retry_delays: float | list[float] = 0.0
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: Any = None
    cache_result_in_memory: bool = True
    log_prints: bool | None = None
    entrypoint: str | None = None
    # Every hook, wrapped to be awaited (see Hooks).
    hooks: Hooks = NO_HOOKS
