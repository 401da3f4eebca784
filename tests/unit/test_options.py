"""Options declared once (TaskOptions / FlowOptions) and hooks wrapped once at spec build."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import threading
import typing

import pytest

from millstream import Flow, Task, flow, task
from millstream._engine.model.spec import FlowSpec, Hooks, TaskSpec
from millstream._options import FLOW_OPTIONS, TASK_OPTIONS, FlowOptions, TaskOptions

# The @task and @flow keyword options as Prefect 3.9.1 documents them (API.md §2).
PREFECT_TASK_OPTIONS = {
    "name",
    "description",
    "tags",
    "version",
    "cache_policy",
    "cache_key_fn",
    "cache_expiration",
    "task_run_name",
    "retries",
    "retry_delay_seconds",
    "retry_jitter_factor",
    "persist_result",
    "result_storage",
    "result_serializer",
    "result_storage_key",
    "cache_result_in_memory",
    "timeout_seconds",
    "log_prints",
    "refresh_cache",
    "on_completion",
    "on_failure",
    "on_running",
    "on_commit",
    "on_rollback",
    "retry_condition_fn",
}
PREFECT_FLOW_OPTIONS = {
    "name",
    "description",
    "version",
    "flow_run_name",
    "task_runner",
    "timeout_seconds",
    "validate_parameters",
    "retries",
    "retry_delay_seconds",
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
}


def body(x: int) -> int:
    """Doc."""
    return x


def test_declared_option_names_are_prefects():
    assert set(typing.get_type_hints(TaskOptions)) == PREFECT_TASK_OPTIONS
    assert set(typing.get_type_hints(FlowOptions)) == PREFECT_FLOW_OPTIONS
    assert TASK_OPTIONS.names == PREFECT_TASK_OPTIONS
    assert FLOW_OPTIONS.names == PREFECT_FLOW_OPTIONS


@pytest.mark.parametrize(
    ("make", "table", "names"),
    [(task, TASK_OPTIONS, PREFECT_TASK_OPTIONS), (flow, FLOW_OPTIONS, PREFECT_FLOW_OPTIONS)],
)
def test_decorator_and_with_options_accept_exactly_the_declared_options(make, table, names):
    obj = make(body)
    for name in sorted(names):
        default = table.options[name].default
        assert isinstance(make(**{name: default})(body), Task | Flow)
        assert type(obj.with_options(**{name: default})) is type(obj)
    for where in (make, obj.with_options, lambda **kw: type(obj)(body, **kw)):
        with pytest.raises(TypeError, match="fn_name_typo"):
            where(fn_name_typo=1)


@pytest.mark.parametrize(("table", "spec"), [(TASK_OPTIONS, TaskSpec), (FLOW_OPTIONS, FlowSpec)])
def test_every_option_copied_to_the_spec_names_a_spec_field(table, spec):
    fields = {f.name for f in dataclasses.fields(spec)}
    for name, option in table.options.items():
        if option.spec is not False:
            assert (name if option.spec is True else option.spec) in fields, name
        if option.wrap:
            assert option.wrap in {f.name for f in dataclasses.fields(Hooks)}, name


def test_task_attributes_and_spec_come_from_the_table():
    t = task(body, tags=["a"], retries=2, retry_delay_seconds=[1, 2], timeout_seconds=3)
    assert (t.name, t.description, t.tags, t.retries, t.timeout_seconds) == (
        "body",
        "Doc.",
        {"a"},
        2,
        3.0,
    )
    spec = t.spec
    assert (spec.name, spec.tags, spec.retries, spec.retry_delays, spec.timeout_seconds) == (
        "body",
        frozenset({"a"}),
        2,
        [1, 2],
        3.0,
    )
    assert spec is t.spec  # cached: calls do not rebuild it


def test_flow_attributes_and_spec_come_from_the_table():
    f = flow(body, validate_parameters=0, retries=1)
    assert (f.name, f.should_validate_parameters, f.retries) == ("body", False, 1)
    assert (f.spec.name, f.spec.validate_parameters, f.spec.retries) == ("body", False, 1)


def test_with_options_carries_decorator_added_hooks_and_the_given_options():
    t = task(body, retries=1, tags={"x"})

    @t.on_completion
    def done(tk, run, state):
        pass

    t2 = t.with_options(timeout_seconds=2)
    assert t2.on_completion_hooks == [done]
    assert (t2.retries, t2.tags, t2.timeout_seconds, t.timeout_seconds) == (1, {"x"}, 2.0, None)
    assert t2.on_completion_hooks is not t.on_completion_hooks


def _run(coro):
    return asyncio.run(coro)


def test_hooks_are_wrapped_once_as_awaitables_and_the_originals_stay_visible():
    seen: list[tuple[str, bool]] = []
    loop_thread: list[threading.Thread] = []

    def sync_hook(tk, run, state):
        seen.append(("sync", threading.current_thread() is loop_thread[0]))

    async def async_hook(tk, run, state):
        seen.append(("async", threading.current_thread() is loop_thread[0]))

    def returns_awaitable(tk, run, state):
        return async_hook(tk, run, state)

    t = task(body, on_completion=[sync_hook, async_hook, returns_awaitable])
    assert t.on_completion_hooks == [sync_hook, async_hook, returns_awaitable]
    wrapped = t.spec.hooks.on_completion
    assert [w.__wrapped__ for w in wrapped] == [sync_hook, async_hook, returns_awaitable]
    assert [w.__name__ for w in wrapped] == ["sync_hook", "async_hook", "returns_awaitable"]
    assert all(inspect.iscoroutinefunction(w) for w in wrapped)

    async def main():
        loop_thread.append(threading.current_thread())
        for hook in wrapped:
            assert await hook(t, None, None) is None

    _run(main())
    # A sync hook ran on a worker thread, never blocking the loop; async ones ran on the loop.
    assert seen == [("sync", False), ("async", True), ("async", True)]


def test_a_wrapped_hook_raises_what_the_hook_raised():
    def bad(tk, run, state):
        raise RuntimeError("boom")

    (wrapped,) = task(body, on_failure=[bad]).spec.hooks.on_failure
    with pytest.raises(RuntimeError, match="boom"):
        _run(wrapped(None, None, None))


def test_retry_condition_is_wrapped_to_an_awaitable_bool():
    calls = []

    def sync_condition(tk, run, state):
        calls.append(threading.current_thread())
        return 1

    async def async_condition(tk, run, state):
        return 0

    assert task(body).spec.hooks.retry_condition is None
    sync_wrapped = task(body, retry_condition_fn=sync_condition).spec.hooks.retry_condition
    async_wrapped = task(body, retry_condition_fn=async_condition).spec.hooks.retry_condition
    assert sync_wrapped is not None and async_wrapped is not None
    assert sync_wrapped.__wrapped__ is sync_condition
    assert _run(sync_wrapped(None, None, None)) is True
    assert _run(async_wrapped(None, None, None)) is False
    assert calls and calls[0] is not threading.current_thread()


def test_transaction_hooks_and_flow_hooks_are_wrapped():
    def commit(txn):
        pass

    hooks = task(body, on_commit=[commit], on_rollback=[commit]).spec.hooks
    assert [h.__wrapped__ for h in (*hooks.on_commit, *hooks.on_rollback)] == [commit, commit]
    assert hooks.on_crashed == hooks.on_cancellation == ()

    def hook(f, run, state):
        pass

    f = flow(body, on_crashed=[hook], on_cancellation=[hook])

    @f.on_running
    def added(fl, run, state):
        pass

    hooks = f.spec.hooks
    assert [h.__wrapped__ for h in hooks.on_crashed] == [hook]
    assert [h.__wrapped__ for h in hooks.on_cancellation] == [hook]
    assert [h.__wrapped__ for h in hooks.on_running] == [added]  # rebuilt after the decorator
    assert hooks.retry_condition is None and hooks.on_commit == ()


@pytest.mark.parametrize(("cls", "table"), [(Task, TASK_OPTIONS), (Flow, FLOW_OPTIONS)])
def test_every_option_attribute_is_declared_on_the_class_for_type_checkers(cls, table):
    declared = set(typing.get_type_hints(cls))
    assert {option.attr or name for name, option in table.options.items()} <= declared
