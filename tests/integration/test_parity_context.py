"""Run context fields Prefect users read, and the context API inside runs."""

from __future__ import annotations

from pathlib import Path

from millstream import flow, task
from millstream.context import FlowRunContext, TaskRunContext, hydrated_context, serialize_context
from millstream.results import ResultStore
from millstream.transactions import CommitMode, transaction


def test_flow_and_task_contexts_carry_result_store_persist_result_and_start_time(tmp_path: Path):
    seen: dict = {}

    @task(result_serializer="json")
    def t() -> None:
        ctx = TaskRunContext.get()
        seen["task"] = (ctx.result_store, ctx.persist_result, ctx.start_time)

    @flow(persist_result=True, result_storage=tmp_path)
    def f() -> None:
        ctx = FlowRunContext.get()
        seen["flow"] = (ctx.result_store, ctx.persist_result, ctx.start_time)
        t()

    f()
    flow_store, flow_persist, flow_start = seen["flow"]
    task_store, task_persist, task_start = seen["task"]
    assert isinstance(flow_store, ResultStore) and flow_persist is True
    assert flow_store.result_storage.basepath == tmp_path
    assert task_store.serializer.type == "json" and task_persist is True
    assert task_store.result_storage.basepath == tmp_path  # the flow's storage, as in Prefect
    assert flow_start is not None and task_start is not None and task_start >= flow_start


def test_a_keyed_transaction_inside_a_task_uses_the_runs_storage(tmp_path: Path):
    @task(result_storage=tmp_path)
    def t() -> dict:
        with transaction(key="inside-task", commit_mode=CommitMode.EAGER) as txn:
            txn.stage({"foo": "bar"})
        return txn.read().result

    assert t() == {"foo": "bar"}
    assert ResultStore(result_storage=tmp_path).read("inside-task").result == {"foo": "bar"}


def test_serialize_and_hydrate_inside_a_flow_run():
    seen: dict = {}

    @flow
    def f() -> None:
        data = serialize_context()
        seen["data"] = data
        with hydrated_context(data):
            seen["ok"] = True

    f()
    assert set(seen["data"]) == {
        "flow_run_context",
        "task_run_context",
        "tags_context",
        "settings_context",
        "asset_context",
        "deployment_id",
        "deployment_parameters",
    }
    assert "flow_run_id" in seen["data"]["flow_run_context"] and seen["ok"]


def test_task_inputs_name_the_upstream_runs_by_parameter():
    from millstream.client.schemas.objects import TaskRunResult
    from millstream.context import get_run_context

    @task
    def t(x: object, y: object = None) -> dict:
        return get_run_context().task_run.task_inputs

    @flow
    def f() -> tuple:
        a = t.submit(1)
        b = t.submit(2)
        return a, b, t.submit([a, 5], y=b, wait_for=[a]).result(), t(3)

    # The returned futures come back as their final states (as Prefect's flows return them).
    a, b, linked, plain = f()
    a_id, b_id = a.state_details.task_run_id, b.state_details.task_run_id
    assert linked == {
        "x": [TaskRunResult(id=a_id)],
        "y": [TaskRunResult(id=b_id)],
        "wait_for": [TaskRunResult(id=a_id)],
    }
    assert plain == {"x": [], "y": []}
    assert repr(linked["x"][0]).startswith("TaskRunResult(input_type='task_run', id=")
