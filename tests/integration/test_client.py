"""The client: reads with filters, sorts and paging; errors; a second process."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import subprocess
import sys
import uuid

import pytest

from sdk import flow, get_client, get_run_logger, tags, task
from sdk.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
    TaskRunFilter,
    TaskRunFilterName,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from sdk.client.schemas.sorting import FlowRunSort
from sdk.exceptions import NotSupportedError, ObjectNotFound
from sdk.states import StateType


@task(retries=1, retry_delay_seconds=0)
def step(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * 2


@flow(flow_run_name="run-{n}")
def numbers(n: int) -> int:
    get_run_logger().warning("working on %d", n)
    return step(n)


@flow
def other() -> None:
    pass


@pytest.fixture
def runs():
    states = []
    with tags("nightly"):
        states.append(numbers(1, return_state=True))
    states.append(numbers(2, return_state=True))
    states.append(numbers(-1, return_state=True))
    other()
    return [s.state_details.flow_run_id for s in states]


def test_read_flow_run_and_its_states_and_result(runs):
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(runs[0])
        assert (run.name, run.state_type, run.parameters, run.tags) == (
            "run-1",
            StateType.COMPLETED,
            {"n": 1},
            ["nightly"],
        )
        assert run.state.result() == 2
        assert [s.type for s in client.read_flow_run_states(runs[0])] == [
            StateType.PENDING,
            StateType.RUNNING,
            StateType.COMPLETED,
        ]
        flow = client.read_flow(run.flow_id)
        assert flow.name == "numbers"
        assert client.read_flow_by_name("numbers").id == run.flow_id
        assert [f.name for f in client.read_flows()] == ["numbers", "other"]
        assert [
            f.name
            for f in client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=["other"])))
        ] == ["other"]


def test_filters_sorts_and_paging(runs):
    with get_client(sync_client=True) as client:
        by_flow = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["numbers"]))
        )
        assert [r.name for r in by_flow] == ["run--1", "run-2", "run-1"]  # newest first
        failed = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
            )
        )
        assert [r.id for r in failed] == [runs[2]]
        assert [
            r.id
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[1]]))
            )
        ] == [runs[1]]
        assert [
            r.name
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=["run-2"]))
            )
        ] == ["run-2"]
        nightly = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["nightly"]))
        )
        assert [r.id for r in nightly] == [runs[0]]
        future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        assert (
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=future))
            )
            == []
        )
        assert (
            len(
                client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(before_=future))
                )
            )
            == 4
        )
        by_name = client.read_flow_runs(sort=FlowRunSort.NAME_ASC, limit=2, offset=1)
        assert [r.name for r in by_name] == sorted(r.name for r in client.read_flow_runs())[1:3]
        with_failed_task = client.read_flow_runs(
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED]))
            )
        )
        assert [r.id for r in with_failed_task] == [runs[2]]
        with pytest.raises(ValueError, match="sort"):
            client.read_flow_runs(sort="SIDEWAYS")
        with pytest.raises(ValueError, match="limit"):
            client.read_flow_runs(limit=-1)


def test_task_runs_and_retry_states(runs):
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[2]]))
        )
        assert [t.name for t in task_runs] == ["step-0"]
        names = [s.name for s in client.read_task_run_states(task_runs[0].id)]
        assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "Failed"]
        assert client.read_task_run(task_runs[0].id).run_count == 2
        named = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=["step-0"]))
        )
        assert len(named) == 3


def test_logs(runs):
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[runs[1]]),
                level=LogFilterLevel(ge_=logging.WARNING),
            )
        )
        assert [line.message for line in logs] == ["working on 2"]


def test_missing_ids_and_server_only_methods(runs):
    with get_client(sync_client=True) as client:
        with pytest.raises(ObjectNotFound):
            client.read_flow_run(uuid.uuid4())
        with pytest.raises(ObjectNotFound):
            client.read_task_run(uuid.uuid4())
        with pytest.raises(ObjectNotFound):
            client.read_flow_by_name("nope")
        with pytest.raises(ObjectNotFound):
            client.read_flow_run("not-an-id")
        with pytest.raises(NotSupportedError, match="read_work_pools"):
            client.read_work_pools()
    with pytest.raises(NotSupportedError, match="httpx_settings"):
        get_client(httpx_settings={"timeout": 1})


def test_delete_flow_run(runs, db_path):
    async def main() -> None:
        async with get_client() as client:
            await client.delete_flow_run(runs[0])
            with pytest.raises(ObjectNotFound):
                await client.read_flow_run(runs[0])
            with pytest.raises(ObjectNotFound):
                await client.delete_flow_run(runs[0])
            assert (
                await client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0]]))
                )
                == []
            )

    asyncio.run(main())


def test_variables_through_the_client():
    from sdk.variables import Variable

    Variable.set("colour", "blue")
    with get_client(sync_client=True) as client:
        assert client.read_variable_by_name("colour").value == "blue"
        assert client.read_variable_by_name("missing") is None


def test_a_run_from_another_process_is_readable_at_once(millstream_home, tmp_path):
    script = tmp_path / "one.py"
    script.write_text(
        "from sdk import flow\n"
        "@flow\n"
        "def remote() -> int:\n"
        "    return 41 + 1\n"
        "print(remote(return_state=True).state_details.flow_run_id)\n"
    )
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    run_id = out.stdout.strip()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        assert run.state_type is StateType.COMPLETED
        assert run.state.result() == 42
