"""Retries, timeouts and state hooks, checked through behaviour and the recorded state history."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from millstream import flow, task
from millstream._engine.store import get_store
from millstream.exceptions import FlowRunTimeoutError, TaskRunTimeoutError
from millstream.states import Cancelled, StateType
from millstream.tasks import exponential_backoff


def task_states(db_path, task_run_id):
    return asyncio.run(get_store(db_path).read_task_run_states(task_run_id))


def test_task_retries_until_success_and_records_retry_states(db_path):
    calls = []

    @task(retries=3, retry_delay_seconds=0)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    state = flaky(return_state=True)
    assert state.result() == "ok"
    assert len(calls) == 3
    names = [s.name for s in task_states(db_path, state.state_details.task_run_id)]
    # prefect 3.9.1: with no retry delay a task goes straight to Retrying (no AwaitingRetry).
    assert names == ["Pending", "Running", "Retrying", "Retrying", "Completed"]
    run = asyncio.run(get_store(db_path).read_task_run(state.state_details.task_run_id))
    assert run.run_count == 3


def test_on_failure_fires_once_after_the_last_retry():
    failures = []

    @task(
        retries=2,
        retry_delay_seconds=[0, 0],
        on_failure=[lambda t, r, s: failures.append(r.run_count)],
    )
    def always_bad() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError):
        always_bad()
    assert failures == [3]


def test_retry_condition_fn_stops_retries():
    calls = []

    def only_connection_errors(task_obj, task_run, state) -> bool:
        return isinstance(state.result(raise_on_failure=False), ConnectionError)

    @task(retries=5, retry_condition_fn=only_connection_errors)
    def fails_with_value_error() -> None:
        calls.append(1)
        raise ValueError("not retriable")

    with pytest.raises(ValueError):
        fails_with_value_error()
    assert len(calls) == 1


def test_retry_delays_are_waited(db_path):
    stamps = []

    @task(retries=2, retry_delay_seconds=[0.05, 0.1])
    def slow_retry() -> None:
        stamps.append(time.monotonic())
        raise ValueError

    slow_retry(return_state=True)
    assert len(stamps) == 3
    assert stamps[1] - stamps[0] >= 0.05
    assert stamps[2] - stamps[1] >= 0.1


def test_exponential_backoff_is_a_callable_of_retries():
    assert exponential_backoff(backoff_factor=2)(4) == [2, 4, 8, 16]

    @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0))
    def t() -> None:
        pass

    assert t.retries == 3


def test_negative_jitter_is_rejected_naming_it():
    with pytest.raises(ValueError, match="retry_jitter_factor"):
        task(retry_jitter_factor=-1)(lambda: None)


def test_flow_retries_rerun_the_body_and_its_tasks():
    body_runs = []
    task_runs = []

    @task
    def step() -> None:
        task_runs.append(1)

    @flow(retries=2, retry_delay_seconds=0)
    def flaky_flow() -> int:
        body_runs.append(1)
        step()
        if len(body_runs) < 2:
            raise RuntimeError("first attempt fails")
        return len(body_runs)

    assert flaky_flow() == 2
    assert len(task_runs) == 2


def test_async_task_timeout_fails_with_timed_out_state():
    @task(timeout_seconds=0.1)
    async def sleepy() -> None:
        await asyncio.sleep(10)

    @flow
    async def f():
        state = await sleepy(return_state=True)
        exc = state.result(raise_on_failure=False)
        return state.type, state.name, await exc

    started = time.monotonic()
    state_type, name, exc = asyncio.run(f())
    assert time.monotonic() - started < 5
    assert (state_type, name) == (StateType.FAILED, "TimedOut")
    assert isinstance(exc, TaskRunTimeoutError)
    assert isinstance(exc, TimeoutError)


def test_sync_task_timeout_fails_with_timed_out_state():
    release = threading.Event()

    @task(timeout_seconds=0.1)
    def blocks() -> None:
        release.wait(10)

    started = time.monotonic()
    with pytest.raises(TaskRunTimeoutError):
        blocks()
    release.set()
    assert time.monotonic() - started < 5


def test_sync_flow_timeout_raises_a_timeout_error():
    release = threading.Event()

    @flow(timeout_seconds=0.1)
    def slow_flow() -> None:
        release.wait(10)

    with pytest.raises(FlowRunTimeoutError):
        slow_flow()
    release.set()
    release.clear()
    state = slow_flow.with_options(timeout_seconds=0.05)(return_state=True)
    release.set()
    assert (state.type, state.name) == (StateType.FAILED, "TimedOut")


def test_async_flow_timeout():
    @flow(timeout_seconds=0.1)
    async def slow() -> None:
        await asyncio.sleep(10)

    with pytest.raises(TimeoutError):
        asyncio.run(slow())


def test_flow_hooks_run_in_order_with_flow_run_and_state():
    seen = []

    @flow(on_completion=[lambda f, r, s: seen.append(("done-1", f.name, s.type))])
    def good() -> int:
        return 1

    @good.on_completion
    def second(f, r, s):
        seen.append(("done-2", r.name == r.name, s.is_completed()))

    @good.on_running
    def running(f, r, s):
        seen.append(("running", s.type))

    assert good() == 1
    assert seen == [
        ("running", StateType.RUNNING),
        ("done-1", "good", StateType.COMPLETED),
        ("done-2", True, True),
    ]


def test_failing_hook_is_logged_and_does_not_change_the_state(caplog):
    def broken_hook(f, r, s):
        raise RuntimeError("hook broke")

    @flow(on_completion=[broken_hook])
    def fine() -> int:
        return 3

    assert fine() == 3
    assert "hook broke" in caplog.text or "broken_hook" in caplog.text


def test_async_hooks_on_async_flows_and_failure_hook():
    seen = []

    async def async_hook(f, r, s):
        await asyncio.sleep(0)
        seen.append(s.type)

    @flow(on_failure=[async_hook])
    async def bad() -> None:
        raise ValueError

    with pytest.raises(ValueError):
        asyncio.run(bad())
    assert seen == [StateType.FAILED]


def test_task_hooks():
    seen = []

    @task(on_completion=[lambda t, r, s: seen.append(("done", t.name, r.name, s.type))])
    def t() -> int:
        return 1

    @t.on_running
    def on_running(tk, r, s):
        seen.append(("running", s.type))

    @flow
    def f() -> int:
        return t()

    assert f() == 1
    assert seen == [("running", StateType.RUNNING), ("done", "t", "t-0", StateType.COMPLETED)]


def test_returning_cancelled_does_not_fire_on_cancellation():
    fired = []

    @flow(on_cancellation=[lambda f, r, s: fired.append(1)])
    def gives_up():
        return Cancelled(message="stop")

    state = gives_up(return_state=True)
    assert state.type is StateType.CANCELLED
    assert fired == []


def test_non_callable_hook_is_rejected():
    def body() -> None:
        pass

    with pytest.raises(TypeError, match="on_completion"):
        flow(on_completion=["not callable"])(body)  # type: ignore[list-item]
