"""sdk.runtime attributes inside and outside runs, and environment overrides."""

from __future__ import annotations

import datetime as dt

import pytest

from sdk import flow, tags, task
from sdk.runtime import deployment, flow_run, task_run


def test_outside_any_run():
    assert (flow_run.id, flow_run.name, flow_run.flow_name) == (None, None, None)
    assert (flow_run.parameters, flow_run.tags, flow_run.run_count) == ({}, [], 0)
    assert isinstance(flow_run.scheduled_start_time, dt.datetime)
    assert (task_run.id, task_run.parameters, task_run.tags, task_run.run_count) == (
        None,
        {},
        [],
        0,
    )
    assert (deployment.id, deployment.parameters, flow_run.api_url) == (None, {}, None)


def test_inside_flows_and_tasks():
    seen = {}

    @task(retries=1, retry_delay_seconds=0, tags=["t"])
    def t(x: int, y: int = 2) -> None:
        seen.setdefault("task", []).append(
            (
                task_run.name,
                task_run.task_name,
                task_run.parameters,
                task_run.tags,
                task_run.run_count,
                flow_run.name,
            )
        )
        if task_run.run_count == 1:
            raise ValueError("retry me")

    @flow(flow_run_name="rt-{a}")
    def f(a: int, b: int = 3) -> None:
        seen["flow"] = (
            flow_run.name,
            flow_run.flow_name,
            flow_run.parameters,
            flow_run.tags,
            flow_run.run_count,
            task_run.id,
            flow_run.root_flow_run_id == flow_run.id,
        )
        t(1)

    with tags("outer"):
        f(1)
    assert seen["flow"] == ("rt-1", "f", {"a": 1, "b": 3}, ["outer"], 1, None, True)
    assert seen["task"] == [
        ("t-0", "t", {"x": 1, "y": 2}, ["outer", "t"], 1, "rt-1"),
        ("t-0", "t", {"x": 1, "y": 2}, ["outer", "t"], 2, "rt-1"),
    ]


@pytest.mark.parametrize("prefix", ["MILLSTREAM", "PREFECT"])
def test_environment_overrides(monkeypatch, prefix):
    monkeypatch.setenv(f"{prefix}__RUNTIME__FLOW_RUN__NAME", "mocked")
    monkeypatch.setenv(f"{prefix}__RUNTIME__TASK_RUN__RUN_COUNT", "5")
    assert flow_run.name == "mocked"
    assert task_run.run_count == 5


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="nope"):
        flow_run.nope  # noqa: B018
