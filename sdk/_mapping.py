"""``Task.map``'s arguments into one parameter dict per mapped run, by Prefect 3.9.1's rules.

Defaults are not mapped over (they are filled in per run); a future or a state given directly
is resolved first, so its result is what is mapped; ``**kwargs`` entries map like named
parameters; ``allow_failure(...)`` and ``quote(...)`` are looked through to find what to
iterate and put back around each element; ``unmapped(...)`` is passed whole to every run.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from millstream._engine.exceptions import (
    MappingLengthMismatch,
    MappingMissingIterable,
    ParameterBindError,
    UpstreamTaskError,
)
from millstream._engine.model.states import State, StateType, state_result
from millstream._engine.orchestrate.annotations import allow_failure, quote, unmapped
from millstream._engine.orchestrate.inputs import engine_future_of

_REWRAPPED = (allow_failure, quote)


def mapped_calls(
    signature: inspect.Signature,
    fn_name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    bound_name: str | None,
) -> list[dict[str, Any]]:
    """One parameter dict (defaults applied) per mapped run."""
    try:
        given = dict(signature.bind(*args, **kwargs).arguments)
    except TypeError as exc:
        raise ParameterBindError.from_bind_failure(
            fn_name, exc, args, kwargs, str(signature)
        ) from None
    parameters = _explode_kwargs(signature, {k: _resolved(v) for k, v in given.items()})
    iterables: dict[str, list[Any]] = {}
    static: dict[str, Any] = {}
    wrappers: dict[str, type[Any]] = {}
    for key, value in parameters.items():
        if isinstance(value, _REWRAPPED):
            wrappers[key] = type(value)
            value = value.value
        if key == bound_name or isinstance(value, unmapped) or not is_mappable(value):
            static[key] = value
        else:
            iterables[key] = list(value)
    return [
        _one_call(signature, static, {k: v[i] for k, v in iterables.items()}, wrappers)
        for i in range(mapped_count(iterables, parameters))
    ]


def mapped_count(iterables: dict[str, list[Any]], parameters: dict[str, Any]) -> int:
    """How many runs a map makes: the length the ``iterables`` share (Prefect's errors when
    there are none or their lengths differ)."""
    if not iterables:
        raise MappingMissingIterable(
            "No iterable parameters were received. Parameters for map must include at "
            f"least one iterable. Parameters: {parameters}"
        )
    lengths = {k: len(v) for k, v in iterables.items()}
    if len(set(lengths.values())) > 1:
        raise MappingLengthMismatch(
            "Received iterable parameters with different lengths. Parameters for map must "
            f"all be the same length. Got lengths: {lengths}"
        )
    return next(iter(lengths.values()))


def _one_call(
    signature: inspect.Signature,
    static: dict[str, Any],
    element: dict[str, Any],
    wrappers: dict[str, type[Any]],
) -> dict[str, Any]:
    call = {**static, **element}
    for key, wrapper in wrappers.items():
        call[key] = wrapper(call[key])
    return _collapse_kwargs(signature, call)


def _resolved(value: Any) -> Any:
    # Only the top level: a future or state given as a whole is mapped over by its result.
    engine_future = engine_future_of(value)
    if engine_future is not None:
        engine_future.wait()
        value = engine_future.state
    if isinstance(value, State):
        if value.type is not StateType.COMPLETED:
            raise UpstreamTaskError(
                f"Upstream task run '{value.state_details.task_run_id}' did not reach a "
                "'COMPLETED' state."
            )
        return state_result(value)
    return value


def _var_keyword(signature: inspect.Signature) -> str | None:
    for name, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            return name
    return None


def _explode_kwargs(signature: inspect.Signature, parameters: dict[str, Any]) -> dict[str, Any]:
    name = _var_keyword(signature)
    if name is None or name not in parameters:
        return parameters
    extra = parameters.pop(name)
    return {**parameters, **extra}


def _collapse_kwargs(signature: inspect.Signature, call: dict[str, Any]) -> dict[str, Any]:
    """Named values back into ``**kwargs``, and the defaults of what was not given."""
    result: dict[str, Any] = {}
    known = signature.parameters
    var_keyword = _var_keyword(signature)
    for name, param in known.items():
        if name in call:
            result[name] = call[name]
        elif param.kind is param.VAR_POSITIONAL:
            result[name] = ()
        elif param.default is not param.empty:
            result[name] = param.default
    if var_keyword is not None:
        result[var_keyword] = {k: v for k, v in call.items() if k not in known}
    return result


def is_mappable(value: Any) -> bool:
    """Whether a map iterates over ``value`` (strings, bytes and dicts are passed whole)."""
    if isinstance(value, str | bytes | bytearray | dict):
        return False
    return isinstance(value, Iterable)
