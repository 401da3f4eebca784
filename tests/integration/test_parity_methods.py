"""Flows and tasks over methods, as Prefect 3.9.1 runs them (each expectation first observed
on prefect==3.9.1): instance methods bind ``self`` and keep it among the parameters (run names
such as "run-{self.x}" see it), classmethods and staticmethods work from the class and from
instances, and bound tasks submit and map."""

from __future__ import annotations

import asyncio
from typing import Any

from millstream import flow, task
from millstream.runtime import flow_run


class Scaler:
    factor = 10

    def __init__(self, x: int) -> None:
        self.x = x

    @flow(flow_run_name="run-{self.x}")
    def scaled(self, y: int) -> tuple[int, str, list[str]]:
        return self.x * y, flow_run.name, sorted(flow_run.parameters)

    @classmethod
    @flow
    def from_class(cls, y: int) -> int:
        return cls.factor * y

    @staticmethod
    @flow
    def plain(y: int) -> int:
        return y + 1

    @task
    def add(self, y: int) -> int:
        return self.x + y

    @classmethod
    @task
    def add_factor(cls, y: int) -> int:
        return cls.factor + y

    @staticmethod
    @task
    def triple(y: int) -> int:
        return y * 3

    @task(task_run_name="t-{self.x}-{y}")
    def named(self, y: int) -> int:
        return y

    @flow
    def uses_tasks(self) -> tuple[Any, ...]:
        named = self.named(8, return_state=True)
        return (
            self.add(1),
            self.add_factor(2),
            self.triple(3),
            self.add.submit(4).result(),
            [f.result() for f in self.add.map([5, 6])],
            Scaler.triple.submit(7).result(),
            named.state_details.task_run_id is not None,
        )

    @flow
    async def asynchronous(self, y: int) -> int:
        return self.x - y


def test_instance_method_flows_bind_self_and_name_runs_from_it():
    # prefect 3.9.1: (6, 'run-2', ['self', 'y'])
    assert Scaler(2).scaled(3) == (6, "run-2", ["self", "y"])
    assert asyncio.run(Scaler(2).asynchronous(1)) == 1


def test_classmethod_and_staticmethod_flows_work_from_the_class_and_instances():
    # prefect 3.9.1: 30, 40, 4, 6
    assert Scaler.from_class(3) == 30
    assert Scaler(1).from_class(4) == 40
    assert Scaler.plain(3) == 4
    assert Scaler(1).plain(5) == 6


def test_method_tasks_call_submit_and_map_bound():
    # prefect 3.9.1: (3, 12, 9, 6, [7, 8], 21); a bound task's run name sees self.
    assert Scaler(2).uses_tasks() == (3, 12, 9, 6, [7, 8], 21, True)


def test_a_bound_task_run_name_renders_self():
    from millstream import get_client

    Scaler(2).uses_tasks()
    with get_client(sync_client=True) as client:
        names = {run.name for run in client.read_task_runs()}
    assert "t-2-8" in names


def test_self_reaches_cache_key_functions():
    seen: list[list[str]] = []

    class Cached:
        v = 3

        @task(cache_key_fn=lambda ctx, params: seen.append(sorted(params)) or "key")
        def cached(self, y: int) -> int:
            return y

        @flow
        def go(self) -> int:
            return self.cached(1)

    assert Cached().go() == 1
    assert seen == [["self", "y"]]


def test_with_options_on_a_bound_method_keeps_the_instance():
    instance = Scaler(3)
    assert instance.add.with_options(name="renamed").fn is Scaler.add.fn

    @flow
    def uses() -> int:
        return instance.add.with_options(retries=1)(1)

    assert uses() == 4
    assert instance.scaled.with_options(flow_run_name="other")(2)[0] == 6
