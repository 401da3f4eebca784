"""A task run's inputs: futures and states among its arguments (and ``wait_for``) resolved to
their results, annotations unwrapped, failed upstreams collected."""

from __future__ import annotations

import uuid
from typing import Any

from millstream._engine.orchestrate.scheduler import (
    BaseAnnotation,
    EngineFuture,
    Upstream,
    has_futures,
    resolve_inputs,
)

# Argument types that can hold neither futures nor annotations: no need to look inside.
_PLAIN_TYPES = frozenset({int, float, str, bool, bytes, type(None)})


def engine_future_of(value: Any) -> EngineFuture | None:
    """The engine future behind ``value`` (a PrefectFuture or an EngineFuture), if any."""
    engine_future = getattr(value, "_engine_future", None)
    if isinstance(engine_future, EngineFuture):
        return engine_future
    return value if isinstance(value, EngineFuture) else None


def is_future(value: Any) -> bool:
    """Whether ``value`` is a future of a task run."""
    return engine_future_of(value) is not None


async def resolve(
    parameters: dict[str, Any], wait_for: list[Any] | None
) -> tuple[dict[str, Any], list[uuid.UUID], bool]:
    """``(parameters with futures replaced by results, failed upstream ids, changed)``.

    Waits for ``wait_for`` first. Plain arguments (the common case) cost one type check each.
    """
    if not wait_for and all(type(v) in _PLAIN_TYPES for v in parameters.values()):
        return parameters, [], False
    if not wait_for and not any(has_futures(v, is_future) for v in parameters.values()):
        # Annotations (unmapped/quote/allow_failure) around plain values are unwrapped here.
        unwrapped = {
            k: v.value if isinstance(v, BaseAnnotation) else v for k, v in parameters.items()
        }
        return unwrapped, [], False
    upstream = Upstream()
    if wait_for:
        await resolve_inputs(list(wait_for), engine_future_of, upstream)
    resolved = {
        k: await resolve_inputs(v, engine_future_of, upstream) for k, v in parameters.items()
    }
    return resolved, upstream.failed, True
