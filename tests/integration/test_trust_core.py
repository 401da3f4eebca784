"""Defects that broke the one-import-line promise quietly: ids, binding, names, return_state."""

from __future__ import annotations

import asyncio
import os
import random
import sys

import pytest

from millstream import flow, runtime, task
from millstream._engine.store import get_store
from millstream.exceptions import ParameterTypeError
from millstream.states import State, StateType


def read_run(db_path, run_id):
    return asyncio.run(get_store(db_path).read_flow_run(run_id))


def read_tasks(db_path, run_id):
    return asyncio.run(get_store(db_path).read_task_runs_of(run_id))


# -- the user's random state is theirs ----------
def test_seeding_random_inside_tasks_does_not_make_task_runs_share_ids(db_path):
    @task
    def seeded(i: int) -> int:
        random.seed(0)
        return i

    @flow
    def many() -> None:
        for i in range(50):
            seeded(i)

    state = many(return_state=True)
    runs = read_tasks(db_path, state.state_details.flow_run_id)
    assert len(runs) == 50
    assert len({r.id for r in runs}) == 50


def test_seeding_random_before_each_flow_call_keeps_every_run_with_its_own_name(db_path):
    @flow
    def train(cfg: int) -> int:
        return cfg

    ids = []
    for cfg in range(20):
        random.seed(0)
        ids.append(train(cfg, return_state=True).state_details.flow_run_id)
    runs = [read_run(db_path, i) for i in ids]
    assert len({r.id for r in runs}) == 20
    assert [r.parameters["cfg"] for r in runs] == list(range(20))
    assert len({r.name for r in runs}) > 1


def test_a_flow_call_does_not_change_the_users_seeded_random_sequence():
    @task(retries=1, retry_delay_seconds=0, retry_jitter_factor=0.5)
    def flaky(first: list[bool]) -> int:
        if first:
            first.pop()
            raise ValueError("once")
        return 1

    @flow
    def with_work() -> int:
        return flaky([True]) + flaky([])

    random.seed(1234)
    expected = [random.random() for _ in range(5)]
    random.seed(1234)
    with_work()
    assert [random.random() for _ in range(5)] == expected


def test_forked_children_make_ids_of_their_own():
    from millstream._engine.model.ids import new_id

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write_end, new_id().bytes)
        os._exit(0)
    os.close(write_end)
    parent_id = new_id()
    child = os.read(read_end, 16)
    os.waitpid(pid, 0)
    os.close(read_end)
    # Same millisecond or not, the 74 random bits of parent and child must differ.
    assert child[6:] != parent_id.bytes[6:]


# -- every value bound to its own name ----------
def test_keyword_only_task_parameters_are_passed_by_name_inline_and_submitted():
    @task
    def kw(a: int, b: int = 10, *, c: int = 100) -> tuple[int, int, int]:
        return (a, b, c)

    @task
    async def akw(a: int, b: int = 10, *, c: int = 100) -> tuple[int, int, int]:
        return (a, b, c)

    @flow
    def sync_flow() -> list[tuple[int, int, int]]:
        return [
            kw(1, c=0),
            kw.submit(1, c=0).result(),
            kw.map([1, 2], c=unmapped_zero()).result()[1],
        ]

    @flow
    async def async_flow() -> list[tuple[int, int, int]]:
        return [await akw(1, c=0), await akw.submit(1, c=0), kw(1, c=0), kw.submit(1, c=0).result()]

    assert sync_flow() == [(1, 10, 0), (1, 10, 0), (2, 10, 0)]
    assert asyncio.run(async_flow()) == [(1, 10, 0)] * 4
    assert kw(1, c=0) == (1, 10, 0)  # outside any flow


def unmapped_zero():
    from millstream import unmapped

    return unmapped(0)


def test_a_flow_called_from_a_mapping_that_omits_an_earlier_default_binds_by_name(db_path):
    from millstream._engine.orchestrate import flow_run as engine_run
    from millstream._sync import run_sync

    seen = []

    @flow
    def etl(day: int = 1, parts: int = 3) -> None:
        seen.append((day, parts))

    state = run_sync(lambda ex: engine_run.run_flow(etl.spec, {"parts": 5}, executor=ex))
    assert state.is_completed()
    assert seen == [(1, 5)]


def test_binder_call_args_keeps_each_value_on_its_name():
    from millstream._engine.model.spec import Binder

    def fn(a, b=2, c=3, /, d=4, *args, e, f=6, **kw):  # type: ignore[no-untyped-def]
        return (a, b, c, d, args, e, f, kw)

    binder = Binder(fn)
    for parameters, expected in [
        ({"a": 1, "e": 5}, (1, 2, 3, 4, (), 5, 6, {})),
        ({"a": 1, "c": 9, "e": 5}, (1, 2, 9, 4, (), 5, 6, {})),
        ({"a": 1, "d": 8, "e": 5, "kw": {"z": 1}}, (1, 2, 3, 8, (), 5, 6, {"z": 1})),
        (
            {"a": 1, "b": 1, "c": 1, "d": 1, "args": (7, 7), "e": 5},
            (1, 1, 1, 1, (7, 7), 5, 6, {}),
        ),
    ]:
        args, kwargs = binder.call_args(parameters)
        assert fn(*args, **kwargs) == expected, parameters

    def g(day=1, parts=3):  # type: ignore[no-untyped-def]
        return (day, parts)

    args, kwargs = Binder(g).call_args({"parts": 5})
    assert g(*args, **kwargs) == (1, 5)


# -- coroutines returned by sync bodies ----------
def test_an_async_task_returned_from_a_sync_flow_or_task_gives_its_value():
    @task
    async def add_one(x: int) -> int:
        return x + 1

    @task
    def sync_wrapper(x: int) -> int:
        return add_one(x)  # type: ignore[return-value]

    @flow
    def returns_call() -> int:
        return add_one(1)  # type: ignore[return-value]

    @flow
    def via_task() -> int:
        return sync_wrapper(3)

    assert returns_call() == 2
    assert returns_call(return_state=True).result() == 2
    assert via_task() == 4


# -- run names from callables see the run's parameters ----------
def test_run_name_callables_read_the_runs_parameters(db_path):
    def flow_name() -> str:
        return f"run-{runtime.flow_run.parameters['x']}"

    def task_name() -> str:
        return f"task-{runtime.task_run.parameters['y']}"

    @task(task_run_name=task_name)
    def named_task(y: int) -> int:
        return y

    @flow(flow_run_name=flow_name)
    def named_flow(x: int) -> str:
        named_task(7)
        named_task.submit(8).result()
        return runtime.flow_run.name

    state = named_flow(5, return_state=True)
    assert state.result() == "run-5"
    run_id = state.state_details.flow_run_id
    assert read_run(db_path, run_id).name == "run-5"
    assert sorted(t.name for t in read_tasks(db_path, run_id)) == ["task-7", "task-8"]


# -- bad parameters with return_state=True ----------
def test_bad_parameters_with_return_state_give_a_failed_state(db_path):
    @flow
    def typed(x: int) -> int:
        return x

    state = typed("not-an-int", return_state=True)  # type: ignore[arg-type]
    assert isinstance(state, State)
    assert state.type is StateType.FAILED
    assert state.message.startswith(
        "Validation of flow parameters failed with error: ParameterTypeError: "
    )
    with pytest.raises(ParameterTypeError):
        state.result()
    assert read_run(db_path, state.state_details.flow_run_id).state_type is StateType.FAILED
    with pytest.raises(ParameterTypeError, match="x"):
        typed("not-an-int")  # type: ignore[arg-type]

    @flow
    async def atyped(x: int) -> int:
        return x

    astate = asyncio.run(atyped("nope", return_state=True))  # type: ignore[arg-type]
    assert astate.type is StateType.FAILED


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_ids_differ_across_many_quick_calls():
    from millstream._engine.model.ids import new_id

    random.seed(0)
    first = [new_id() for _ in range(1000)]
    random.seed(0)
    second = [new_id() for _ in range(1000)]
    assert len(set(first) | set(second)) == 2000
