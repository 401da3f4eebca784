"""millstream.runtime attributes outside and inside runs (as prefect 3.9.1 reports them)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest

from millstream import aserve, flow, tags, task
from millstream.deployments import arun_deployment
from millstream.runtime import deployment, flow_run, task_run
from millstream.states import StateType


def test_outside_any_run():
    assert (flow_run.id, flow_run.name, flow_run.flow_name, flow_run.flow_version) == (None,) * 4
    assert (flow_run.parameters, flow_run.tags, flow_run.run_count) == ({}, [], 0)
    assert (flow_run.parent_flow_run_id, flow_run.parent_deployment_id) == (None, None)
    assert flow_run.root_flow_run_id is None
    assert (flow_run.api_url, flow_run.ui_url, flow_run.job_variables) == (None, None, None)
    when = flow_run.scheduled_start_time
    assert when.tzinfo is not None and abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(60)
    assert (task_run.id, task_run.name, task_run.task_name) == (None, None, None)
    assert (task_run.parameters, task_run.tags, task_run.run_count) == ({}, [], 0)
    assert (deployment.id, deployment.name, deployment.version) == (None, None, None)
    assert (deployment.flow_run_id, deployment.parameters) == (None, {})
    assert sorted(dir(flow_run)) == sorted(flow_run.__all__)


def test_inside_flows_and_tasks_with_retries():
    seen: dict[str, list[tuple]] = {"flow": [], "task": []}

    @task(retries=1, retry_delay_seconds=0, tags=["t"])
    def t(x: int, y: int = 2) -> None:
        seen["task"].append(
            (
                task_run.name,
                task_run.task_name,
                task_run.parameters,
                task_run.tags,
                task_run.run_count,
                flow_run.name,
                flow_run.tags,
                flow_run.run_count,
                flow_run.id == seen["flow"][-1][0],
            )
        )
        if task_run.run_count == 1:
            raise ValueError("retry me")

    @flow(flow_run_name="rt-{a}", retries=1, version="v7")
    def f(a: int, b: int = 3) -> None:
        seen["flow"].append(
            (
                flow_run.id,
                flow_run.name,
                flow_run.flow_name,
                flow_run.flow_version,
                flow_run.parameters,
                flow_run.tags,
                flow_run.run_count,
                (task_run.id, task_run.name, task_run.parameters, task_run.run_count),
                flow_run.root_flow_run_id == flow_run.id,
                flow_run.parent_flow_run_id,
            )
        )
        t(1)
        if flow_run.run_count == 1:
            raise RuntimeError("retry the flow")

    with tags("outer"):
        f(1)
    first, second = seen["flow"]
    assert first[0] == second[0] and uuid.UUID(first[0])
    assert first[1:] == (
        "rt-1",
        "f",
        "v7",
        {"a": 1, "b": 3},
        ["outer"],
        1,
        (None,) * 2 + ({}, 0),
        True,
        None,
    )
    assert second[6] == 2  # the flow's run_count on its retry
    # Each flow attempt calls the task, which runs twice (run_count 1 then 2).
    assert [entry[4] for entry in seen["task"]] == [1, 2, 1, 2]
    assert seen["task"][0][:4] == ("t-0", "t", {"x": 1, "y": 2}, ["outer", "t"])
    assert all(entry[5:7] == ("rt-1", ["outer"]) and entry[8] for entry in seen["task"])
    assert [entry[7] for entry in seen["task"]] == [1, 1, 2, 2]


def test_subflows_and_tasks_outside_flows():
    seen = {}

    @flow
    def child() -> None:
        seen["child"] = (flow_run.id, flow_run.parent_flow_run_id, flow_run.root_flow_run_id)
        seen["child_deployment"] = (flow_run.parent_deployment_id, deployment.id)

    @flow
    def parent() -> None:
        seen["parent"] = flow_run.id
        child()

    @task
    def alone() -> tuple:
        return (flow_run.id, flow_run.name, flow_run.tags, task_run.name, task_run.run_count)

    parent()
    child_id, parent_id, root_id = seen["child"]
    assert parent_id == root_id == seen["parent"] != child_id
    assert seen["child_deployment"] == (None, None)
    flow_id, flow_name, flow_tags, name, count = alone()
    assert (flow_id, flow_name, flow_tags, count) == (None, None, [], 1)
    assert name.startswith("alone-")


def test_async_flows_and_tasks():
    @task
    async def t() -> tuple:
        await asyncio.sleep(0)
        return task_run.task_name, flow_run.name

    @flow(flow_run_name="async-run")
    async def f() -> tuple:
        when = flow_run.scheduled_start_time
        assert when.tzinfo is not None and when <= dt.datetime.now(dt.UTC)
        return await t()

    assert asyncio.run(f()) == ("t", "async-run")


@task
def report() -> dict:
    return {
        "deployment": (deployment.name, deployment.parameters),
        "parent_deployment_id": flow_run.parent_deployment_id,
    }


@flow
def served_child() -> dict:
    found = report()
    found["child"] = (deployment.name, deployment.flow_run_id == flow_run.id, flow_run.id)
    found["parent_deployment_id"] = flow_run.parent_deployment_id
    return found


@flow
def served(x: int, y: int = 1) -> dict:
    return {
        "id": deployment.id,
        "name": deployment.name,
        "version": deployment.version,
        "flow_run_id": deployment.flow_run_id == flow_run.id,
        "parameters": deployment.parameters,
        "sub": served_child(),
    }


def test_deployment_attributes_in_a_served_run_and_its_subflows(db_path):
    dep = served.to_deployment("nightly", parameters={"y": 5}, version="3")

    async def body():
        await dep.aapply()
        worker = asyncio.ensure_future(aserve(dep, print_starting_message=False))
        try:
            return await arun_deployment("served/nightly", parameters={"x": 1}, poll_interval=0.02)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker

    run = asyncio.run(body())
    assert run.state_type is StateType.COMPLETED
    found = run.state.result()
    assert (found["id"], found["name"], found["version"]) == (str(dep.id), "nightly", "3")
    assert found["flow_run_id"] is True and found["parameters"] == {"x": 1, "y": 5}
    sub = found["sub"]
    # A subflow of a deployment run sees that deployment, and its parent's deployment id.
    assert sub["child"][:2] == ("nightly", True) and sub["child"][2] != str(run.id)
    assert sub["deployment"] == ("nightly", {"x": 1, "y": 5})
    assert sub["parent_deployment_id"] == str(dep.id)


@pytest.mark.parametrize("prefix", ["MILLSTREAM", "PREFECT"])
def test_environment_overrides(monkeypatch, prefix):
    monkeypatch.setenv(f"{prefix}__RUNTIME__FLOW_RUN__NAME", "mocked")
    monkeypatch.setenv(f"{prefix}__RUNTIME__TASK_RUN__RUN_COUNT", "5")
    monkeypatch.setenv(f"{prefix}__RUNTIME__FLOW_RUN__SCHEDULED_START_TIME", "2024-01-02T03:04:05")
    monkeypatch.setenv(f"{prefix}__RUNTIME__FLOW_RUN__PARAMETERS", '{"a": 1}')
    monkeypatch.setenv(f"{prefix}__RUNTIME__DEPLOYMENT__ID", "dep-id")
    monkeypatch.setenv(f"{prefix}__RUNTIME__FLOW_RUN__SOMETHING_ELSE", "text")
    assert flow_run.name == "mocked"
    assert task_run.run_count == 5
    assert flow_run.scheduled_start_time == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert flow_run.parameters == {"a": 1}
    assert deployment.id == "dep-id"
    assert flow_run.something_else == "text"

    @flow
    def f() -> tuple:
        return flow_run.name, flow_run.flow_name

    assert f() == ("mocked", "f")  # overrides win inside runs too


def test_bad_overrides_name_the_variable(monkeypatch):
    monkeypatch.setenv("MILLSTREAM__RUNTIME__TASK_RUN__RUN_COUNT", "many")
    with pytest.raises(ValueError, match="MILLSTREAM__RUNTIME__TASK_RUN__RUN_COUNT='many'"):
        task_run.run_count  # noqa: B018
    monkeypatch.setenv("MILLSTREAM__RUNTIME__FLOW_RUN__TAGS", '{"not": "a list"}')
    with pytest.raises(ValueError, match="not a valid list"):
        flow_run.tags  # noqa: B018


def test_unknown_attribute_and_from_imports():
    with pytest.raises(AttributeError, match="nope"):
        flow_run.nope  # noqa: B018
    with pytest.raises(ImportError, match="nope"):
        from millstream.runtime.task_run import nope  # noqa: F401
    from millstream.runtime.flow_run import name  # a value, read at import time

    assert name is None
