"""A task run's inputs: futures and states among its arguments (and ``wait_for``) resolved to
their results, annotations unwrapped, failed upstreams collected."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from millstream._engine.model.states import State, StateType, state_result
from millstream._engine.orchestrate.annotations import BaseAnnotation, allow_failure, opaque, quote
from millstream._engine.orchestrate.scheduler import EngineFuture

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
    parameters: dict[str, Any],
    wait_for: list[Any] | None,
    links: dict[str, list[uuid.UUID]] | None = None,
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
    upstream = Upstream(links)
    if wait_for:
        upstream.parameter = "wait_for"
        await resolve_inputs(list(wait_for), engine_future_of, upstream)
    resolved = {}
    for k, v in parameters.items():
        upstream.parameter = k
        resolved[k] = await resolve_inputs(v, engine_future_of, upstream)
    return resolved, upstream.failed, True


class Upstream:
    """What resolving a task's inputs found: failed upstreams block the run unless allowed;
    ``links`` (when given) collects the upstream run ids by parameter."""

    __slots__ = ("failed", "links", "parameter")

    def __init__(self, links: dict[str, list[uuid.UUID]] | None = None) -> None:
        self.failed: list[uuid.UUID] = []
        self.links = links
        self.parameter = ""

    def link(self, run_id: uuid.UUID | None) -> None:
        """Note that the current parameter came from task run ``run_id``."""
        if self.links is not None and run_id is not None:
            self.links.setdefault(self.parameter, []).append(run_id)


def has_futures(value: Any, is_future: Callable[[Any], bool], depth: int = 0) -> bool:
    """Whether ``value`` is or holds (in lists, tuples, sets, dicts) a future or a state."""
    if is_future(value) or isinstance(value, State | allow_failure):
        return True
    if isinstance(value, opaque):
        return is_future(value.value) or isinstance(value.value, State)
    if depth > 5:
        return False
    if isinstance(value, list | tuple | set | frozenset):
        return any(has_futures(v, is_future, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(has_futures(v, is_future, depth + 1) for v in value.values())
    return False


async def resolve_inputs(
    value: Any,
    to_engine: Callable[[Any], EngineFuture | None],
    upstream: Upstream,
    allow: bool = False,
) -> Any:
    """Replace futures and states inside ``value`` by their results."""
    if isinstance(value, quote):
        return value.value
    if isinstance(value, opaque):
        return await _resolve_opaque(value.value, to_engine, upstream, allow)
    if isinstance(value, allow_failure):
        return await resolve_inputs(value.value, to_engine, upstream, allow=True)
    engine_future = to_engine(value)
    if engine_future is not None:
        state = await engine_future.wait_async()
        return _state_value(state, engine_future.task_run_id, upstream, allow)
    if isinstance(value, State):
        return _state_value(value, None, upstream, allow)
    if isinstance(value, list):
        return [await resolve_inputs(v, to_engine, upstream, allow) for v in value]
    if isinstance(value, tuple):
        items = [await resolve_inputs(v, to_engine, upstream, allow) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if isinstance(value, set | frozenset):
        return type(value)([await resolve_inputs(v, to_engine, upstream, allow) for v in value])
    if isinstance(value, dict):
        return {k: await resolve_inputs(v, to_engine, upstream, allow) for k, v in value.items()}
    return value


async def _resolve_opaque(
    inner: Any, to_engine: Callable[[Any], EngineFuture | None], upstream: Upstream, allow: bool
) -> Any:
    """The top level only: a future or state becomes its result; nothing inside is visited."""
    if to_engine(inner) is None and not isinstance(inner, State):
        return inner
    return await resolve_inputs(inner, to_engine, upstream, allow)  # a future or a state


def _state_value(state: State, run_id: uuid.UUID | None, upstream: Upstream, allow: bool) -> Any:
    upstream.link(run_id or state.state_details.task_run_id)
    if state.type is StateType.COMPLETED:
        return state_result(state)
    if allow:
        return state_result(state, raise_on_failure=False)
    upstream.failed.append(run_id or state.state_details.task_run_id or uuid.UUID(int=0))
    return None
