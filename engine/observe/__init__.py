"""OpenTelemetry: a span per flow run and task run (the ``otel`` extra), off and free without it.

Spans are made once the application has set an OpenTelemetry SDK ``TracerProvider``
(``trace.set_tracer_provider(...)``); until then — and always when ``opentelemetry`` was never
imported — ``tracer()`` is one ``sys.modules`` lookup and returns None, and nothing else runs.
This module never imports OpenTelemetry itself.

A run's span covers its attempts (``orchestrate.attempts``) and is the current span while they
run, so spans of nested runs (subflows, task runs, mapped task runs) are its children; the
context travels with the engine's copied ``contextvars`` into worker threads and tasks. Its
attributes: ``millstream.run.kind`` (flow/task), ``.id``, ``.name``, ``millstream.flow.name`` or
``millstream.task.name``/``.key``, ``millstream.flow_run.id`` (of a task run),
``millstream.run.run_count`` and ``.retries`` (allowed), and at the end
``millstream.state.type``/``.name``; a retry is an event ``retry`` on the span, a failure sets
the span's status to ERROR. Log lines of a traced run carry ``trace_id`` and ``span_id``.

For other processes (a process pool, Dask): ``carrier()`` gives the current context as a dict
of W3C ``traceparent`` headers, and ``attached(carrier)`` makes it current on the other side.
A deployment run triggered in a process that also serves it (``run_deployment`` in a traced
flow, a ``POST`` with a ``traceparent`` header to the worker's HTTP API) is remembered
(``remember``) and its flow run's span is a child of the trigger's (``recall``); a run claimed
by another process starts a trace of its own (the context is not kept in the database).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "attached",
    "carrier",
    "end_run",
    "log_ids",
    "recall",
    "remember",
    "retrying",
    "start_run",
    "tracer",
]

_cached: tuple[Any, Any] | None = None  # (provider, tracer)
_SCOPE = "millstream"
_UNKNOWN = object()


def tracer() -> Any:
    """The tracer to make run spans with, or None when tracing is off (the usual, free case)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    return _tracer_of(trace)


def _tracer_of(trace: Any) -> Any:
    global _cached
    # The API keeps the provider set by the application in this global (None until one is
    # set): reading it is ~20 times quicker than get_tracer_provider(), which runs on every
    # run while OpenTelemetry is imported but not configured.
    if getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return None
    provider = trace.get_tracer_provider()
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    # The API's stand-ins (no SDK configured yet) make no spans: stay off, at no cost.
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        found = None
    else:
        found = provider.get_tracer(_SCOPE)
    _cached = (provider, found)
    return found


def start_run(run: Any, spec: Any) -> tuple[Any, Any] | None:
    """Start the span of ``run`` as the current span and return what ``end_run`` needs; None
    (at the cost of one dict lookup) when tracing is off."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    tracer = _tracer_of(trace)
    if tracer is None:
        return None
    from opentelemetry import context

    is_task = hasattr(run, "task_key")
    attributes: dict[str, Any] = {
        "millstream.run.kind": "task" if is_task else "flow",
        "millstream.run.id": str(run.id),
        "millstream.run.name": run.name,
        "millstream.run.retries": int(spec.retries or 0),
    }
    if is_task:
        attributes["millstream.task.name"] = run.task_name
        attributes["millstream.task.key"] = run.task_key
        if run.flow_run_id is not None:
            attributes["millstream.flow_run.id"] = str(run.flow_run_id)
    else:
        attributes["millstream.flow.name"] = run.flow_name
        if run.deployment_id is not None:
            attributes["millstream.deployment.id"] = str(run.deployment_id)
    kind = "task" if is_task else "flow"
    span = tracer.start_span(f"{kind} {run.name}", attributes=attributes)
    token = context.attach(trace.set_span_in_context(span))
    return span, token


def retrying(handle: tuple[Any, Any] | None, run: Any, delay: float) -> None:
    """Record on the run's span (if traced) that an attempt failed and another one follows."""
    if handle is None:
        return
    span = handle[0]
    span.add_event("retry", {"millstream.run.run_count": run.run_count, "delay_seconds": delay})


def end_run(handle: tuple[Any, Any], run: Any, state: Any) -> None:
    """End the run's span with its final state (ERROR status for a failure) and detach it."""
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span, token = handle
    try:
        if state is not None:
            span.set_attribute("millstream.state.type", state.type.value)
            span.set_attribute("millstream.state.name", state.name or "")
            if state.type.value in ("FAILED", "CRASHED"):
                span.set_status(Status(StatusCode.ERROR, state.message or state.name))
        span.set_attribute("millstream.run.run_count", run.run_count)
        span.end()
    finally:
        context.detach(token)


def log_ids() -> dict[str, str] | None:
    """``{"trace_id", "span_id"}`` of the current span (hex), or None when there is none."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or _tracer_of(trace) is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to send to another process ({} when off)."""
    if tracer() is None:
        return {}
    from opentelemetry.propagate import inject

    headers: dict[str, str] = {}
    inject(headers)
    return headers


@contextlib.contextmanager
def attached(headers: Mapping[str, str] | None) -> Iterator[None]:
    """Make the trace context of ``headers`` (from ``carrier()``) current inside the block."""
    if not headers or tracer() is None:
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract(dict(headers)))
    try:
        yield
    finally:
        context.detach(token)


# Trace contexts of deployment runs triggered in this process, until a worker here runs them.
_triggered: dict[Any, dict[str, str]] = {}
_TRIGGERED_MAX = 10_000


def remember(run_id: Any) -> None:
    """Keep the current trace context for the run just triggered (nothing when tracing is off)."""
    if tracer() is None:
        return
    headers = carrier()
    if headers:
        if len(_triggered) >= _TRIGGERED_MAX:  # runs another process took: forget the oldest
            _triggered.pop(next(iter(_triggered)))
        _triggered[run_id] = headers


def recall(run_id: Any) -> dict[str, str] | None:
    """The trace context its trigger had, for a run about to be served here (once)."""
    return _triggered.pop(run_id, None) if _triggered else None
