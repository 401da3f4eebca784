"""Flows and tasks end to end: calling, naming, options, subflows, results, final states."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest

from millstream import Flow, Task, flow, tags, task
from millstream._engine.store import get_store
from millstream.exceptions import FailedRun, ParameterBindError
from millstream.states import Completed, Failed, State, StateType


def read_run(db_path, run_id):
    return asyncio.run(get_store(db_path).read_flow_run(run_id))


def read_tasks(db_path, run_id):
    return asyncio.run(get_store(db_path).read_task_runs_of(run_id))


def test_bare_and_configured_decorators_return_flow_and_task_objects():
    @flow
    def my_flow(x: int) -> int:
        """Docs of my flow."""
        return x

    @task(name="custom", tags=["a"], version="2")
    def my_task() -> None:
        pass

    assert isinstance(my_flow, Flow)
    assert my_flow.name == "my-flow"
    assert my_flow.description == "Docs of my flow."
    assert my_flow.isasync is False
    assert isinstance(my_task, Task)
    assert (my_task.name, my_task.tags, my_task.version) == ("custom", {"a"}, "2")


def test_default_task_name_is_the_function_name_unchanged():
    @task
    def my_task_fn() -> None:
        pass

    assert my_task_fn.name == "my_task_fn"


def test_sync_flow_calls_tasks_and_returns_value(db_path):
    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def pipeline(n: int) -> int:
        return sum(double(i) for i in range(n))

    state = pipeline(4, return_state=True)
    assert state.is_completed()
    assert state.result() == 12
    run = read_run(db_path, state.state_details.flow_run_id)
    assert run.flow_name == "pipeline"
    assert run.parameters == {"n": 4}
    assert run.state_type is StateType.COMPLETED
    task_runs = read_tasks(db_path, run.id)
    assert [t.task_name for t in task_runs] == ["double"] * 4
    assert sorted(int(t.dynamic_key) for t in task_runs) == [0, 1, 2, 3]
    assert all(t.state_type is StateType.COMPLETED and t.run_count == 1 for t in task_runs)


def test_sync_flow_body_runs_on_the_calling_thread():
    seen = {}

    @task
    def where_task() -> int:
        return threading.get_ident()

    @flow
    def where_flow() -> tuple[int, int]:
        return threading.get_ident(), where_task()

    flow_thread, task_thread = where_flow()
    assert flow_thread == threading.get_ident() == task_thread
    assert not seen


def test_async_flow_awaited_inside_a_running_loop_runs_on_that_loop():
    @task
    async def add(x: int, y: int) -> int:
        return x + y

    @flow
    async def adder(n: int) -> int:
        total = 0
        for i in range(n):
            total = await add(total, i)
        return total

    async def app() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        result = await adder(5)
        return result, asyncio.get_running_loop() is loop

    assert asyncio.run(app()) == (10, True)


def test_gather_of_several_flows_in_one_loop(db_path):
    @task
    async def echo(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @flow
    async def one(x: int) -> int:
        return await echo(x)

    async def main() -> list[int]:
        return await asyncio.gather(*(one(i) for i in range(5)))

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_sync_flow_called_from_inside_a_running_loop_does_not_deadlock():
    @task
    def inc(x: int) -> int:
        return x + 1

    @flow
    def sync_flow(x: int) -> int:
        return inc(x)

    async def handler() -> int:
        return sync_flow(1)

    assert asyncio.run(handler()) == 2


def test_task_called_outside_any_flow_runs_and_is_recorded(db_path):
    @task
    def alone(x: int) -> int:
        return x * 3

    @task
    async def alone_async(x: int) -> int:
        return x * 4

    assert alone(2) == 6
    assert asyncio.run(alone_async(2)) == 8
    state = alone(1, return_state=True)
    run = asyncio.run(get_store(db_path).read_task_run(state.state_details.task_run_id))
    assert run.flow_run_id is None
    assert run.state_type is StateType.COMPLETED


def test_tasks_calling_tasks():
    @task
    def inner(x: int) -> int:
        return x + 1

    @task
    def outer(x: int) -> int:
        return inner(x) * 10

    @flow
    def f() -> int:
        return outer(1)

    assert f() == 20


def test_subflow_has_its_own_run_and_parent_link(db_path):
    @flow
    def child(x: int) -> int:
        return x + 1

    @flow
    def parent() -> int:
        return child(1)

    state = parent(return_state=True)
    assert state.result() == 2
    store = get_store(db_path)

    async def find_child():
        rows = await store.fetchall_sql("SELECT id FROM flow_run WHERE flow_name = 'child'", ())
        return await store.read_flow_run(rows[0][0])

    child_run = asyncio.run(find_child())
    assert child_run.parent_flow_run_id == state.state_details.flow_run_id
    assert child_run.root_flow_run_id == state.state_details.flow_run_id


def test_subflow_exception_propagates_to_parent():
    @flow
    def child() -> None:
        raise KeyError("deep")

    @flow
    def parent() -> None:
        child()

    with pytest.raises(KeyError, match="deep"):
        parent()


def test_flow_exception_is_reraised_and_return_state_gives_failed():
    @flow
    def boom() -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        boom()
    state = boom(return_state=True)
    assert state.is_failed()
    assert "ValueError: bad" in (state.message or "")
    with pytest.raises(ValueError):
        state.result()
    assert isinstance(state.result(raise_on_failure=False), ValueError)


def test_returned_state_is_adopted():
    @flow
    def gives_completed() -> State:
        return Completed(message="all good", data=7)

    @flow
    def gives_failed() -> State:
        return Failed(message="nope")

    state = gives_completed(return_state=True)
    assert (state.message, state.result()) == ("all good", 7)
    with pytest.raises(FailedRun, match="nope"):
        gives_failed()


def test_returned_futures_come_back_as_states_and_failures_fail_the_flow():
    @task
    def ok(x: int) -> int:
        return x

    @task
    def bad() -> None:
        raise RuntimeError("task broke")

    @flow
    def returns_futures() -> list:
        return [ok.submit(1), ok.submit(2)]

    @flow
    def returns_one_bad() -> list:
        return [ok.submit(1), bad.submit()]

    states = returns_futures()
    assert [s.result() for s in states] == [1, 2]
    state = returns_one_bad(return_state=True)
    assert state.is_failed()
    assert state.message == "1/2 states failed."
    with pytest.raises(RuntimeError, match="task broke"):
        state.result()
    # Checked on prefect 3.9.1: the call itself gives back the returned collection (futures
    # resolved to states) without raising, though the run is Failed.
    assert [s.type.value for s in returns_one_bad()] == ["COMPLETED", "FAILED"]


def test_unreturned_failed_future_does_not_fail_the_flow_but_a_raised_task_does():
    @task
    def bad() -> None:
        raise RuntimeError("ignored")

    @flow
    def ignores() -> str:
        bad.submit()
        return "fine"

    @flow
    def raises() -> str:
        bad()
        return "unreachable"

    assert ignores() == "fine"
    with pytest.raises(RuntimeError, match="ignored"):
        raises()


def test_flow_waits_for_unreturned_submitted_tasks(db_path):
    done = threading.Event()

    @task
    def slow() -> None:
        done.wait(5)

    @flow
    def fire_and_forget() -> str:
        slow.submit()
        done.set()
        return "x"

    state = fire_and_forget(return_state=True)
    runs = read_tasks(db_path, state.state_details.flow_run_id)
    assert [r.state_type for r in runs] == [StateType.COMPLETED]


def test_run_names_from_templates_and_callables(db_path):
    @task(task_run_name="mul-{x}-by-{y}")
    def mul(x: int, y: int) -> int:
        return x * y

    @flow(flow_run_name="run-for-{n}")
    def named(n: int) -> int:
        return mul(n, 2)

    @flow(flow_run_name=lambda: "from-callable")
    def named_by_callable() -> None:
        pass

    state = named(3, return_state=True)
    run = read_run(db_path, state.state_details.flow_run_id)
    assert run.name == "run-for-3"
    assert [t.name for t in read_tasks(db_path, run.id)] == ["mul-3-by-2"]
    state = named_by_callable(return_state=True)
    assert read_run(db_path, state.state_details.flow_run_id).name == "from-callable"


def test_bad_run_name_template_names_the_missing_key():
    @flow(flow_run_name="run-{missing}")
    def f(n: int) -> None:
        pass

    with pytest.raises(ValueError, match="missing"):
        f(1)


def test_bind_errors_are_type_errors():
    @task
    def needs_two(a: int, b: int) -> int:
        return a + b

    @flow
    def needs_one(a: int) -> int:
        return a

    with pytest.raises(ParameterBindError):
        needs_two(1)
    with pytest.raises(TypeError):
        needs_one(1, 2, 3)


def test_with_options_returns_a_new_object_and_leaves_the_original():
    @task(retries=1)
    def t() -> None:
        pass

    @flow(name="orig")
    def f() -> None:
        pass

    t2 = t.with_options(name="renamed", retries=3)
    f2 = f.with_options(name="other", timeout_seconds=5)
    assert (t.name, t.retries) == ("t", 1)
    assert (t2.name, t2.retries) == ("renamed", 3)
    assert (f.name, f.timeout_seconds) == ("orig", None)
    assert (f2.name, f2.timeout_seconds) == ("other", 5)
    with pytest.raises(TypeError, match="bogus"):
        t.with_options(bogus=1)


def test_unknown_decorator_option_is_an_error_naming_it():
    with pytest.raises(TypeError, match="retrys"):
        task(retrys=3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="nmae"):
        flow(nmae="x")  # type: ignore[call-overload]


@pytest.mark.parametrize("value", [0, -1, "5"])
def test_bad_timeout_is_rejected_naming_the_value(value):
    with pytest.raises(ValueError, match="timeout_seconds"):
        task(timeout_seconds=value)(lambda: None)


def test_tags_context_applies_to_flow_and_task_runs_including_submitted(db_path):
    @task(tags=["own"])
    def t() -> None:
        pass

    @flow
    def f() -> None:
        with tags("inner"):
            t()
            t.submit().wait()

    with tags("outer") as current:
        assert current == {"outer"}
        state = f(return_state=True)
    run = read_run(db_path, state.state_details.flow_run_id)
    assert run.tags == ["outer"]
    assert [sorted(r.tags) for r in read_tasks(db_path, run.id)] == [
        ["inner", "outer", "own"],
        ["inner", "outer", "own"],
    ]


def test_flow_run_id_can_be_given_by_the_caller(db_path):
    @flow
    def f() -> int:
        return 1

    run_id = uuid.uuid4()
    state = f(flow_run_id=run_id, return_state=True)
    assert state.state_details.flow_run_id == run_id
    assert read_run(db_path, run_id).state_type is StateType.COMPLETED


def test_keyboard_interrupt_in_a_flow_crashes_it_and_propagates(db_path):
    crashed = []

    def on_crashed(flow_obj, flow_run, state):
        crashed.append(state.type)

    @flow(on_crashed=[on_crashed])
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert crashed == [StateType.CRASHED]

    # The engine loop survived the interrupt: flows still run.
    @flow
    def after() -> int:
        return 5

    assert after() == 5


def test_sdk_never_runs_a_sync_body_on_an_event_loop_thread():
    @task
    def sync_body() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True
        return False

    @flow
    async def async_flow() -> bool:
        return await sync_body.submit()

    assert asyncio.run(async_flow()) is True


def test_bad_parameters_fail_before_any_task_runs(db_path):
    from millstream.exceptions import ParameterTypeError

    ran = []

    @task
    def side_effect() -> None:
        ran.append(1)

    @flow
    def typed(count: int, label: str) -> None:
        side_effect()

    with pytest.raises(ParameterTypeError, match="'label'"):
        typed("3", 5)
    assert ran == []
    typed("3", "ok")  # "3" becomes 3, as pydantic's lax mode does
    assert ran == [1]
    assert typed.validate_parameters({"count": "4", "label": "x"}) == {"count": 4, "label": "x"}


def test_task_returning_a_failed_state_fails():
    @task
    def gives_failed() -> State:
        return Failed(message="told to fail")

    state = gives_failed(return_state=True)
    assert state.is_failed() and state.message == "told to fail"


def test_run_contexts():
    from millstream.context import FlowRunContext, TaskRunContext, get_run_context
    from millstream.exceptions import MissingContextError

    with pytest.raises(MissingContextError):
        get_run_context()
    assert FlowRunContext.get() is None and TaskRunContext.get() is None

    @task
    def inside_task() -> tuple:
        ctx = get_run_context()
        return type(ctx).__name__, ctx.task.name, ctx.task_run.name, ctx.parameters

    @flow
    def f(x: int) -> tuple:
        ctx = get_run_context()
        assert FlowRunContext.get() is ctx and TaskRunContext.get() is None
        return (type(ctx).__name__, ctx.flow.name, ctx.parameters), inside_task()

    assert f(5) == (
        ("FlowRunContext", "f", {"x": 5}),
        ("TaskRunContext", "inside_task", "inside_task-0", {}),
    )
