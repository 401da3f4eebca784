"""The client: every filter, sort and page; errors; sync twins; reads from another process."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from pg_fixtures import rows_of

from millstream import flow, get_client, get_run_logger, tags, task
from millstream._engine import logs
from millstream.client.orchestration import PrefectClient, SyncPrefectClient
from millstream.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterName,
    FlowFilter,
    FlowFilterId,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterFlowVersion,
    FlowRunFilterId,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterName,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterLevel,
    LogFilterTaskRunId,
    LogFilterTextSearch,
    LogFilterTimestamp,
    TaskRunFilter,
    TaskRunFilterEndTime,
    TaskRunFilterFlowRunId,
    TaskRunFilterId,
    TaskRunFilterName,
    TaskRunFilterStartTime,
    TaskRunFilterState,
    TaskRunFilterStateName,
    TaskRunFilterStateType,
    TaskRunFilterSubFlowRuns,
    TaskRunFilterTags,
)
from millstream.client.schemas.sorting import FlowRunSort, FlowSort, LogSort, TaskRunSort
from millstream.exceptions import NotSupportedError, ObjectAlreadyExists, ObjectNotFound
from millstream.states import StateType


@task(retries=1, retry_delay_seconds=0, tags=["math"])
def step(x: int) -> int:
    get_run_logger().info("step %d", x)
    if x < 0:
        raise ValueError("negative")
    return x * 2


@flow(flow_run_name="run-{n}", version="v1")
def numbers(n: int) -> int:
    get_run_logger().warning("working on %d", n)
    return step(n)


@flow(flow_run_name="other")
def other() -> None:
    pass


@flow(flow_run_name="child-{x}")
def child(x: int) -> int:
    return x + 1


@task
def launcher(x: int) -> int:
    return child(x)


@flow(flow_run_name="parent")
def parent() -> int:
    child(1)
    return launcher(2)


@dataclass
class Seeded:
    """The recorded runs every test reads: ids by flow run name, plus two instants."""

    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    before: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    middle: dt.datetime | None = None
    after: dt.datetime | None = None

    @property
    def all(self) -> set[str]:
        return set(self.ids)


@pytest.fixture
def seeded(backend: str, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    # Every test reading these runs runs against SQLite and against PostgreSQL (``backend``).
    # The log cases below are about the lines the runs log themselves: not the engine's own
    # lines about each run (tested in test_run_visibility).
    monkeypatch.setattr(logs, "task_line_enabled", lambda level: False)
    monkeypatch.setattr(logs, "flow_line_enabled", lambda level: False)
    seeded = Seeded()
    with tags("nightly"):
        numbers(1)
    numbers(2)
    seeded.middle = dt.datetime.now(dt.UTC)
    numbers(-1, return_state=True)
    other()
    parent()
    seeded.after = dt.datetime.now(dt.UTC)
    with get_client(sync_client=True) as client:
        seeded.ids = {run.name: run.id for run in client.read_flow_runs()}
    return seeded


def names(runs: list[Any]) -> list[str]:
    return [run.name for run in runs]


def test_read_flow_run_has_prefects_fields_and_states_in_order(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(seeded.ids["run-1"])
        assert (run.id, run.name, run.parameters, run.tags) == (
            seeded.ids["run-1"],
            "run-1",
            {"n": 1},
            ["nightly"],
        )
        assert (run.state_type, run.state_name, run.run_count) == (
            StateType.COMPLETED,
            "Completed",
            1,
        )
        assert run.start_time is not None and run.end_time is not None
        assert run.start_time <= run.end_time
        assert run.parent_task_run_id is None and run.deployment_id is None
        assert run.state is not None and run.state.result() == 2
        assert client.read_flow(run.flow_id).name == "numbers"
        states = client.read_flow_run_states(str(run.id))  # a string id works too
        assert [s.type for s in states] == [
            StateType.PENDING,
            StateType.RUNNING,
            StateType.COMPLETED,
        ]
        assert [s.timestamp for s in states] == sorted(s.timestamp for s in states)
        subflow = client.read_flow_run(seeded.ids["child-2"])
        assert subflow.parent_task_run_id is not None
        assert subflow.parent_flow_run_id == seeded.ids["parent"]


def test_flows_by_id_name_filters_sorts_and_pages(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        numbers_flow = client.read_flow_by_name("numbers")
        assert client.read_flow(numbers_flow.id) == numbers_flow
        assert names(client.read_flows()) == ["child", "numbers", "other", "parent"]
        assert names(client.read_flows(sort=FlowSort.NAME_DESC)) == [
            "parent",
            "other",
            "numbers",
            "child",
        ]
        assert len(client.read_flows(sort=FlowSort.CREATED_DESC)) == 4
        assert names(client.read_flows(limit=2, offset=1)) == ["numbers", "other"]
        by = [
            (FlowFilter(name=FlowFilterName(any_=["other", "nope"])), ["other"]),
            (FlowFilter(name=FlowFilterName(like_="AREN")), ["parent"]),
            (FlowFilter(id=FlowFilterId(any_=[str(numbers_flow.id)])), ["numbers"]),
        ]
        for flow_filter, expected in by:
            assert names(client.read_flows(flow_filter=flow_filter)) == expected, flow_filter
        failed = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
        )
        assert names(client.read_flows(flow_run_filter=failed)) == ["numbers"]
        with_subflows = TaskRunFilter(subflow_runs=TaskRunFilterSubFlowRuns(exists_=True))
        assert names(client.read_flows(task_run_filter=with_subflows)) == ["parent"]
        with pytest.raises(NotSupportedError, match="tags"):
            client.read_flows(flow_filter=FlowFilter(tags=["x"]))


def flow_run_cases(s: Seeded) -> list[tuple[str, dict[str, Any], set[str]]]:
    """(label, read_flow_runs keyword arguments, names expected) for every filter field."""
    assert s.middle is not None and s.after is not None
    numbers_runs = {"run-1", "run-2", "run--1"}
    children = {"child-1", "child-2"}
    future = s.after + dt.timedelta(hours=1)
    never = [uuid.uuid4()]

    def frf(**kw: Any) -> dict[str, Any]:
        return {"flow_run_filter": FlowRunFilter(**kw)}

    def state(**kw: Any) -> dict[str, Any]:
        return frf(state=FlowRunFilterState(**kw))

    def trf(**kw: Any) -> dict[str, Any]:
        return {"task_run_filter": TaskRunFilter(**kw)}

    return [
        ("no filter", {}, s.all),
        (
            "flow name",
            {"flow_filter": FlowFilter(name=FlowFilterName(any_=["numbers"]))},
            numbers_runs,
        ),
        (
            "flow name like",
            {"flow_filter": FlowFilter(name=FlowFilterName(like_="NUMB"))},
            numbers_runs,
        ),
        (
            "id any",
            frf(id=FlowRunFilterId(any_=[s.ids["run-2"], str(s.ids["other"])])),
            {"run-2", "other"},
        ),
        ("id not any", frf(id=FlowRunFilterId(not_any_=[s.ids["parent"]])), s.all - {"parent"}),
        ("id any empty", frf(id=FlowRunFilterId(any_=[])), set()),
        ("id not any empty", frf(id=FlowRunFilterId(not_any_=[])), s.all),
        ("name any", frf(name=FlowRunFilterName(any_=["run-2", "nope"])), {"run-2"}),
        ("name like", frf(name=FlowRunFilterName(like_="CHILD")), children),
        ("tags all", frf(tags=FlowRunFilterTags(all_=["nightly"])), {"run-1"}),
        ("tags all two", frf(tags=FlowRunFilterTags(all_=["nightly", "x"])), set()),
        ("tags any", frf(tags=FlowRunFilterTags(any_=["x", "nightly"])), {"run-1"}),
        ("tags is null", frf(tags=FlowRunFilterTags(is_null_=True)), s.all - {"run-1"}),
        ("tags not null", frf(tags=FlowRunFilterTags(is_null_=False)), {"run-1"}),
        ("state type", state(type=FlowRunFilterStateType(any_=[StateType.FAILED])), {"run--1"}),
        ("state type as text", state(type=FlowRunFilterStateType(any_=["failed"])), {"run--1"}),
        (
            "state type not any",
            state(type=FlowRunFilterStateType(not_any_=[StateType.COMPLETED])),
            {"run--1"},
        ),
        ("state name", state(name=FlowRunFilterStateName(any_=["Failed"])), {"run--1"}),
        (
            "state name not any",
            state(name=FlowRunFilterStateName(not_any_=["Completed"])),
            {"run--1"},
        ),
        ("flow version", frf(flow_version=FlowRunFilterFlowVersion(any_=["v1"])), numbers_runs),
        (
            "started after",
            frf(start_time=FlowRunFilterStartTime(after_=s.middle)),
            s.all - {"run-1", "run-2"},
        ),
        (
            "started before",
            frf(start_time=FlowRunFilterStartTime(before_=s.middle)),
            {"run-1", "run-2"},
        ),
        ("never started", frf(start_time=FlowRunFilterStartTime(is_null_=True)), set()),
        ("ended after", frf(end_time=FlowRunFilterEndTime(after_=future)), set()),
        ("ended before", frf(end_time=FlowRunFilterEndTime(before_=future)), s.all),
        ("not ended", frf(end_time=FlowRunFilterEndTime(is_null_=True)), set()),
        (
            "expected before",
            frf(expected_start_time=FlowRunFilterExpectedStartTime(before_=s.middle)),
            {"run-1", "run-2"},
        ),
        (
            "next scheduled",
            frf(next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=future)),
            set(),
        ),
        (
            "parent flow run",
            frf(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[s.ids["parent"]])),
            children,
        ),
        (
            "parent task run set",
            # Every subflow run has one (as in Prefect): the task run standing for it.
            frf(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=False)),
            children,
        ),
        (
            "no parent task run",
            frf(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True)),
            s.all - children,
        ),
        ("deployment id", frf(deployment_id=FlowRunFilterDeploymentId(any_=never)), set()),
        ("no deployment", frf(deployment_id=FlowRunFilterDeploymentId(is_null_=True)), s.all),
        ("idempotency key", frf(idempotency_key=FlowRunFilterIdempotencyKey(any_=["k"])), set()),
        (
            "idempotency key not",
            frf(idempotency_key=FlowRunFilterIdempotencyKey(not_any_=["k"])),
            set(),
        ),
        (
            "has a failed task run",
            trf(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED]))),
            {"run--1"},
        ),
        ("has a task run named", trf(name=TaskRunFilterName(like_="launcher")), {"parent"}),
        (
            "has a subflow task",
            trf(subflow_runs=TaskRunFilterSubFlowRuns(exists_=True)),
            {"parent"},
        ),
        (
            "deployment filter id",
            {"deployment_filter": DeploymentFilter(id=DeploymentFilterId(any_=never))},
            set(),
        ),
        (
            "deployment filter name",
            {"deployment_filter": DeploymentFilter(name=DeploymentFilterName(any_=["d"]))},
            set(),
        ),
        (
            "flow and state together",
            {
                "flow_filter": FlowFilter(name=FlowFilterName(any_=["numbers"])),
                **state(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
            },
            {"run-1", "run-2"},
        ),
    ]


def test_every_flow_run_filter(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        for label, kwargs, expected in flow_run_cases(seeded):
            found = client.read_flow_runs(**kwargs)
            assert set(names(found)) == expected, label
            assert client.count_flow_runs(**kwargs) == len(expected), label


def test_default_order_is_newest_first_and_every_sort_orders(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        assert [r.created for r in runs] == sorted((r.created for r in runs), reverse=True)
        assert names(
            client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["numbers"])))
        ) == ["run--1", "run-2", "run-1"]
        expected = {
            FlowRunSort.ID_DESC: sorted(runs, key=lambda r: r.id, reverse=True),
            FlowRunSort.START_TIME_ASC: sorted(runs, key=lambda r: r.start_time),
            FlowRunSort.START_TIME_DESC: sorted(runs, key=lambda r: r.start_time, reverse=True),
            FlowRunSort.EXPECTED_START_TIME_ASC: sorted(runs, key=lambda r: r.created),
            FlowRunSort.EXPECTED_START_TIME_DESC: sorted(
                runs, key=lambda r: r.created, reverse=True
            ),
            FlowRunSort.NAME_ASC: sorted(runs, key=lambda r: r.name),
            FlowRunSort.NAME_DESC: sorted(runs, key=lambda r: r.name, reverse=True),
            FlowRunSort.END_TIME_DESC: sorted(runs, key=lambda r: r.end_time, reverse=True),
            # Nothing is scheduled: every run ties, and ties go by id.
            FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC: sorted(runs, key=lambda r: r.id),
        }
        assert set(expected) == set(FlowRunSort)
        for sort, in_order in expected.items():
            assert names(client.read_flow_runs(sort=sort)) == names(in_order), sort
        assert names(client.read_flow_runs(sort="NAME_ASC")) == names(
            expected[FlowRunSort.NAME_ASC]
        )
        with pytest.raises(ValueError, match=r"SIDEWAYS.*NAME_ASC"):
            client.read_flow_runs(sort="SIDEWAYS")


def test_limit_and_offset_page_through_every_run_once(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        everything = names(client.read_flow_runs(sort=FlowRunSort.NAME_ASC))
        pages = [
            names(client.read_flow_runs(sort=FlowRunSort.NAME_ASC, limit=3, offset=offset))
            for offset in range(0, len(everything), 3)
        ]
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [name for page in pages for name in page] == everything
        assert client.read_flow_runs(limit=0) == []
        assert client.read_flow_runs(offset=100) == []
        for bad in ({"limit": -1}, {"offset": -1}, {"limit": True}, {"limit": 1.5}):
            with pytest.raises(ValueError, match=r"limit|offset"):
                client.read_flow_runs(**bad)


def test_bad_filter_values_and_server_only_filters_fail_clearly(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        with pytest.raises(ValueError, match="not-an-id"):
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=["not-an-id"]))
            )
        with pytest.raises(TypeError, match="list"):
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_="run-1"))
            )
        with pytest.raises(ValueError, match="timezone"):
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    start_time=FlowRunFilterStartTime(after_=dt.datetime(2020, 1, 1))
                )
            )
        with pytest.raises(NotSupportedError, match="work_queue_name"):
            client.read_flow_runs(flow_run_filter=FlowRunFilter(work_queue_name={"any_": ["q"]}))
        with pytest.raises(NotSupportedError, match="concurrency"):
            client.read_flow_runs(deployment_filter=DeploymentFilter(concurrency_limit={"ge_": 1}))
        with pytest.raises(NotSupportedError, match="work pools"):
            client.read_flow_runs(work_pool_filter=object())
        with pytest.raises(TypeError):
            FlowRunFilter(colour="blue")  # type: ignore[call-arg]


def test_task_runs_filters_sorts_pages_and_retry_states(seeded: Seeded) -> None:
    step(5)  # a task run outside any flow run
    with get_client(sync_client=True) as client:
        of_failed = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[seeded.ids["run--1"]]))
        )
        assert [t.name for t in of_failed] == ["step-0"]
        failed_step = of_failed[0]
        assert failed_step.run_count == 2 and failed_step.tags == ["math"]
        assert client.read_task_run(failed_step.id).state_type is StateType.FAILED
        # prefect 3.9.1: a task retried with no delay goes straight to Retrying.
        assert [s.name for s in client.read_task_run_states(failed_step.id)] == [
            "Pending",
            "Running",
            "Retrying",
            "Failed",
        ]
        every = client.read_task_runs()
        # A step in each numbers run, the launcher, the lonely step, and the two task runs of
        # the parent flow run standing for its subflow runs (one called inside the launcher).
        assert len(every) == 7
        assert [t.created for t in every] == sorted((t.created for t in every), reverse=True)

        def trf(**kw: Any) -> dict[str, Any]:
            return {"task_run_filter": TaskRunFilter(**kw)}

        cases: list[tuple[str, dict[str, Any], int]] = [
            ("id", trf(id=TaskRunFilterId(any_=[failed_step.id])), 1),
            ("name", trf(name=TaskRunFilterName(any_=["step-0"])), 3),
            ("name like", trf(name=TaskRunFilterName(like_="LAUNCH")), 1),
            ("tags", trf(tags=TaskRunFilterTags(all_=["math"])), 4),
            ("no tags", trf(tags=TaskRunFilterTags(is_null_=True)), 3),
            (
                "state type",
                trf(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED]))),
                1,
            ),
            (
                "state name",
                trf(state=TaskRunFilterState(name=TaskRunFilterStateName(any_=["Completed"]))),
                6,
            ),
            ("started", trf(start_time=TaskRunFilterStartTime(after_=seeded.before)), 7),
            ("never started", trf(start_time=TaskRunFilterStartTime(is_null_=True)), 0),
            ("ended", trf(end_time=TaskRunFilterEndTime(before_=seeded.middle)), 2),
            (
                "flow run",
                trf(flow_run_id=TaskRunFilterFlowRunId(any_=[seeded.ids["parent"]])),
                3,
            ),
            ("outside flows", trf(flow_run_id=TaskRunFilterFlowRunId(is_null_=True)), 1),
            ("no subflow", trf(subflow_runs=TaskRunFilterSubFlowRuns(exists_=False)), 5),
            ("of a flow", {"flow_filter": FlowFilter(name=FlowFilterName(any_=["numbers"]))}, 3),
        ]
        for label, kwargs, count in cases:
            assert len(client.read_task_runs(**kwargs)) == count, label
        by_name = client.read_task_runs(sort=TaskRunSort.NAME_ASC)
        assert [t.name for t in by_name] == sorted(t.name for t in every)
        assert [
            t.name for t in client.read_task_runs(sort=TaskRunSort.NAME_ASC, limit=2, offset=3)
        ] == [t.name for t in by_name][3:5]
        for sort in TaskRunSort:
            assert len(client.read_task_runs(sort=sort)) == 7, sort
        durations = client.read_task_runs(sort=TaskRunSort.DURATION_DESC)
        assert [t.total_run_time for t in durations] == sorted(
            (t.total_run_time for t in every), reverse=True
        )
        in_call_order = client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_ASC)
        assert [t.created for t in in_call_order] == sorted(t.created for t in every)


def test_logs_filters_sorts_and_pages(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        run_id = seeded.ids["run-2"]
        of_run = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        assert [line.message for line in of_run] == ["working on 2", "step 2"]
        assert all(line.flow_run_id == run_id for line in of_run)
        task_line = of_run[1]
        assert task_line.task_run_id is not None and task_line.level == logging.INFO
        cases: list[tuple[str, LogFilter, list[str]]] = [
            (
                "warnings",
                LogFilter(level=LogFilterLevel(ge_=logging.WARNING)),
                ["working on 1", "working on 2", "working on -1"],
            ),
            (
                "info only",
                LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[run_id]),
                    level=LogFilterLevel(le_=logging.INFO),
                ),
                ["step 2"],
            ),
            (
                "task run",
                LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_line.task_run_id])),
                ["step 2"],
            ),
            (
                "not from tasks",
                LogFilter(
                    flow_run_id=LogFilterFlowRunId(any_=[run_id]),
                    task_run_id=LogFilterTaskRunId(is_null_=True),
                ),
                ["working on 2"],
            ),
            ("text", LogFilter(text=LogFilterTextSearch(query="ON -1")), ["working on -1"]),
            ("after", LogFilter(timestamp=LogFilterTimestamp(after_=seeded.after)), []),
            (
                "before",
                LogFilter(
                    timestamp=LogFilterTimestamp(before_=seeded.middle),
                    level=LogFilterLevel(ge_=logging.WARNING),
                ),
                ["working on 1", "working on 2"],
            ),
        ]
        for label, log_filter, expected in cases:
            assert [line.message for line in client.read_logs(log_filter)] == expected, label
        everything = client.read_logs()
        assert [line.id for line in everything] == sorted(line.id for line in everything)
        newest_first = client.read_logs(sort=LogSort.TIMESTAMP_DESC)
        assert [line.timestamp for line in newest_first] == sorted(
            (line.timestamp for line in everything), reverse=True
        )
        assert (
            client.read_logs(sort=LogSort.TIMESTAMP_ASC, limit=2, offset=1)
            == sorted(everything, key=lambda line: (line.timestamp, line.id))[1:3]
        )


def test_missing_and_malformed_ids_raise_object_not_found(seeded: Seeded) -> None:
    missing = uuid.uuid4()
    with get_client(sync_client=True) as client:
        for read in (
            client.read_flow_run,
            client.read_flow_run_states,
            client.read_task_run,
            client.read_task_run_states,
            client.read_flow,
            client.delete_flow_run,
        ):
            with pytest.raises(ObjectNotFound, match=str(missing)):
                read(missing)
            with pytest.raises(ObjectNotFound, match="not-an-id"):
                read("not-an-id")
        with pytest.raises(ObjectNotFound, match="nope"):
            client.read_flow_by_name("nope")


def test_server_only_methods_name_themselves(seeded: Seeded) -> None:
    with get_client(sync_client=True) as client:
        with pytest.raises(NotSupportedError, match=r"read_work_pools\(\).*work pools"):
            client.read_work_pools()
        with pytest.raises(NotSupportedError, match="create_automation"):
            client.create_automation(object())
        with pytest.raises(NotSupportedError, match="create_flow_run"):
            client.create_flow_run(other)
        # set_flow_run_state works in-process now (issue 10): only a non-State is refused.
        with pytest.raises(TypeError, match="set_flow_run_state"):
            client.set_flow_run_state(seeded.ids["other"], object())
        with pytest.raises(AttributeError, match="read_flow_rnus"):
            client.read_flow_rnus  # noqa: B018
    assert client.api_url is None
    # There is no HTTP here: HTTP settings are refused, not silently ignored.
    with pytest.raises(NotSupportedError, match="httpx_settings"):
        get_client(httpx_settings={"timeout": 5}, sync_client=True)
    with get_client(sync_client=True) as client:
        assert client.hello() == "hello from millstream"
        assert client.api_healthcheck() is None


def test_delete_flow_run_takes_its_task_runs_and_logs(seeded: Seeded, db_path: Any) -> None:
    doomed = seeded.ids["run--1"]

    async def main() -> None:
        async with get_client() as client:
            await client.delete_flow_run(doomed)
            with pytest.raises(ObjectNotFound):
                await client.read_flow_run(doomed)
            with pytest.raises(ObjectNotFound):
                await client.delete_flow_run(doomed)
            assert len(await client.read_flow_runs()) == len(seeded.ids) - 1

    asyncio.run(main())
    for table in ("flow_run", "task_run", "log"):
        column = "id" if table == "flow_run" else "flow_run_id"
        count = rows_of(db_path, f"SELECT count(*) FROM {table} WHERE {column} = ?", doomed.bytes)
        assert count == [(0,)], table
    assert rows_of(db_path, "SELECT count(*) FROM log")[0][0] > 0


def test_variables_through_the_client() -> None:
    from millstream.variables import Variable

    Variable.set("colour", {"r": 1}, tags=["paint"])

    @dataclass
    class NewVariable:
        name: str
        value: Any
        tags: list[str] | None = None

    with get_client(sync_client=True) as client:
        found = client.read_variable_by_name("colour")
        assert found is not None and (found.value, found.tags) == ({"r": 1}, ["paint"])
        assert client.read_variable_by_name("missing") is None
        client.create_variable(NewVariable("size", 3))
        with pytest.raises(ObjectAlreadyExists, match="size"):
            client.create_variable(NewVariable("size", 4))
        client.update_variable(NewVariable("size", 5))
        with pytest.raises(ObjectNotFound, match="nothing"):
            client.update_variable(NewVariable("nothing", 1))
        assert [(v.name, v.value) for v in client.read_variables()] == [
            ("colour", {"r": 1}),
            ("size", 5),
        ]
        assert [v.name for v in client.read_variables(limit=1)] == ["colour"]
        client.delete_variable_by_name("size")
        with pytest.raises(ObjectNotFound, match="size"):
            client.delete_variable_by_name("size")
    # The same encoding both ways: what the client wrote, Variable reads.
    assert Variable.get("colour") == {"r": 1}


def test_every_async_method_has_a_blocking_twin_that_agrees(seeded: Seeded) -> None:
    public = {
        name
        for name, member in vars(PrefectClient).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    }
    twins = {name for name in vars(SyncPrefectClient) if not name.startswith("_")}
    assert public <= twins
    assert "Blocking form of ``read_flow_runs``" in (SyncPrefectClient.read_flow_runs.__doc__ or "")

    async def read_async() -> list[str]:
        async with get_client() as client:
            return names(await client.read_flow_runs(sort=FlowRunSort.NAME_ASC))

    via_async = asyncio.run(read_async())
    with get_client(sync_client=True) as client:
        assert names(client.read_flow_runs(sort=FlowRunSort.NAME_ASC)) == via_async

    async def sync_client_inside_a_running_loop() -> list[str]:
        with get_client(sync_client=True) as client:
            return names(client.read_flow_runs(sort=FlowRunSort.NAME_ASC))

    assert asyncio.run(sync_client_inside_a_running_loop()) == via_async


def test_a_run_finished_in_another_process_is_readable_at_once(
    seeded: Seeded, millstream_home: Any, tmp_path: Any
) -> None:
    script = tmp_path / "one.py"
    script.write_text(
        "from millstream import flow\n"
        "@flow\n"
        "def remote() -> int:\n"
        "    return 41 + 1\n"
        "print(remote(return_state=True).state_details.flow_run_id)\n"
    )
    env = {**os.environ, "MILLSTREAM_HOME": str(millstream_home)}
    # The client is open (and has read) before the other process writes.
    with get_client(sync_client=True) as client:
        assert len(client.read_flow_runs()) == len(seeded.ids)
        out = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        run = client.read_flow_run(out.stdout.strip())
        assert run.state_type is StateType.COMPLETED
        assert run.state is not None and run.state.result() == 42
        assert names(
            client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=["remote"])))
        ) == ["remote"]
