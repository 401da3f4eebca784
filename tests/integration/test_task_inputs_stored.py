"""A task run's inputs (Prefect's ``task_inputs``: the upstream task runs each parameter came
from, and ``wait_for``) are stored with its row and read back through the client; a task run
without upstream runs stores nothing for them."""

from __future__ import annotations

import uuid

from pg_fixtures import rows_of

from millstream import flow, task
from millstream.client.orchestration import get_client
from millstream.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from millstream.client.schemas.objects import TaskRunResult


@task
def add(x: object, y: object = None) -> int:
    return 1


@flow
def pipeline() -> dict[str, uuid.UUID]:
    a = add.submit(1)
    b = add.submit(2)
    c = add.submit([a, 5], y=b, wait_for=[a])
    c.wait()
    plain = add(3, return_state=True)
    # A state passed in names its task run as well.
    from_state = add(plain, return_state=True)
    ids = {"a": a.task_run_id, "b": b.task_run_id, "c": c.task_run_id}
    ids["plain"] = plain.state_details.task_run_id
    ids["from_state"] = from_state.state_details.task_run_id
    return ids


def test_task_inputs_are_read_back_through_the_client(backend, db_path):
    ids = pipeline()
    a, b = ids["a"], ids["b"]
    with get_client(sync_client=True) as client:
        linked = client.read_task_run(ids["c"])
        assert linked.task_inputs == {
            "x": [TaskRunResult(id=a)],
            "y": [TaskRunResult(id=b)],
            "wait_for": [TaskRunResult(id=a)],
        }
        assert client.read_task_run(ids["from_state"]).task_inputs == {
            "x": [TaskRunResult(id=ids["plain"])],
            "y": [],
        }
        # Every parameter is there, with no upstream runs.
        assert client.read_task_run(ids["plain"]).task_inputs == {"x": [], "y": []}
        assert client.read_task_run(a).task_inputs == {"x": [], "y": []}
        # Lists of task runs carry them too.
        flow_run_id = linked.flow_run_id
        assert flow_run_id is not None
        listed = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
        assert {t.id: t.task_inputs for t in listed}[ids["c"]] == linked.task_inputs


def test_only_task_runs_with_upstream_runs_store_them(backend, db_path):
    ids = pipeline()
    stored = {
        uuid.UUID(bytes=bytes(r[0])): r[1]
        for r in rows_of(db_path, "SELECT id, task_inputs FROM task_run")
    }
    assert len(stored) == 5
    assert {i for i, blob in stored.items() if blob is not None} == {ids["c"], ids["from_state"]}


def test_the_dashboards_read_names_the_upstream_runs(backend, db_path):
    import asyncio

    from millstream._engine.store import dashboard as reads
    from millstream._engine.store import get_store

    ids = pipeline()
    store = get_store(db_path)

    async def read() -> list[dict[str, object]]:
        return await reads.read_upstream_runs(store, await store.read_task_run(ids["c"]))

    upstream = asyncio.run(read())
    # In task_inputs order (the parameters, then wait_for); names as recorded.
    assert [(u["parameter"], u["count"]) for u in upstream] == [
        ("x", 1),
        ("y", 1),
        ("wait_for", 1),
    ]
    assert upstream[0]["runs"] == [{"id": ids["a"], "name": "add-0"}]
    assert upstream[1]["runs"] == [{"id": ids["b"], "name": "add-1"}]
