"""Sync-compatible names (awaitable in async code, plain in sync code) and deployment options,
as Prefect 3.9.1 has them. Each expectation was first observed on prefect==3.9.1."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from millstream import flow, task
from millstream.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from millstream.exceptions import FailedRun, NotSupportedError
from millstream.runtime import flow_run, task_run
from millstream.states import Completed, Failed, get_state_exception, raise_state_exception
from millstream.variables import Variable


@task
def five() -> int:
    return 5


@flow
def sync_flow_reading_a_state() -> int:
    return five(return_state=True).result()


@flow
def adder(x: int = 1) -> int:
    return x


def test_dual_names_are_awaitable_in_async_code():
    # prefect 3.9.1: await Variable.set/get/unset, await raise_state_exception(...), await
    # get_state_exception(...); State.result() under a running loop is a coroutine, _sync=True
    # forces the value; a sync flow called under a running loop gets values from
    # state.result() in its body.
    async def main() -> dict[str, object]:
        seen: dict[str, object] = {}
        await Variable.set("dual_k", 3, overwrite=True)
        seen["get"] = await Variable.get("dual_k")
        seen["unset"] = await Variable.unset("dual_k")
        with pytest.raises(FailedRun, match="zz"):
            await raise_state_exception(Failed(message="zz"))
        seen["exc"] = repr(await get_state_exception(Failed(message="q")))
        pending = Completed(data=1).result()
        seen["coroutine"] = asyncio.iscoroutine(pending)
        seen["awaited"] = await pending
        seen["forced"] = Completed(data=2).result(_sync=True)
        seen["sync flow"] = sync_flow_reading_a_state()
        return seen

    assert asyncio.run(main()) == {
        "get": 3,
        "unset": True,
        "exc": "FailedRun('q')",
        "coroutine": True,
        "awaited": 1,
        "forced": 2,
        "sync flow": 5,
    }


def test_dual_names_are_plain_calls_in_sync_code():
    Variable.set("dual_s", 4, overwrite=True)
    assert Variable.get("dual_s") == 4
    assert Variable.unset("dual_s") is True
    with pytest.raises(FailedRun, match="sync"):
        raise_state_exception(Failed(message="sync"))
    assert raise_state_exception(Completed()) is None
    assert Completed(data=7).result() == 7


def test_to_deployment_is_awaitable_and_ato_deployment_exists():
    # prefect 3.9.1: `await flow.to_deployment(...)` and `await flow.ato_deployment(...)`
    # give a RunnerDeployment in async code.
    async def main() -> tuple[str, str]:
        one = await adder.to_deployment("awaited-dep")
        two = await adder.ato_deployment("ato-dep")
        return one.name, two.name

    assert asyncio.run(main()) == ("awaited-dep", "ato-dep")


def test_to_deployment_concurrency_limit_is_kept_and_stored_and_triggers_are_refused():
    # prefect 3.9.1: concurrency_limit=2 -> .concurrency_limit == 2; a ConcurrencyLimitConfig
    # gives its limit and .concurrency_options.collision_strategy.
    plain = adder.to_deployment("limited", concurrency_limit=2)
    assert plain.concurrency_limit == 2 and plain.concurrency_options is None
    config = ConcurrencyLimitConfig(limit=3, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    configured = adder.to_deployment("limited-cfg", concurrency_limit=config)
    assert configured.concurrency_limit == 3
    assert configured.concurrency_options.collision_strategy is ConcurrencyLimitStrategy.CANCEL_NEW
    configured.apply()
    from millstream._engine.serve.deployments import read
    from millstream._sync import run_sync
    from millstream.deployments import _store

    async def read_back() -> tuple[int | None, str | None]:
        record = await read(await _store(), "adder/limited-cfg")
        return record.concurrency_limit, record.collision_strategy

    assert run_sync(lambda _: read_back()) == (3, "CANCEL_NEW")
    with pytest.raises(ValueError, match="concurrency_limit"):
        adder.to_deployment("bad-limit", concurrency_limit=0)
    with pytest.raises(NotSupportedError, match="triggers"):
        adder.to_deployment("triggered", triggers=[object()])


def test_runtime_reads_the_flow_run_id_from_the_environment(monkeypatch):
    # prefect 3.9.1: outside a run, flow_run.id is PREFECT__FLOW_RUN_ID; unknown attributes
    # raise AttributeError "prefect.runtime.flow_run has no attribute 'x'" (ImportError on
    # `from ... import x`).
    run_id = str(uuid.uuid4())
    assert flow_run.id is None
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", run_id)
    assert flow_run.id == run_id
    monkeypatch.setenv("MILLSTREAM__FLOW_RUN_ID", "ours-first")
    assert flow_run.id == "ours-first"
    with pytest.raises(AttributeError, match=r"millstream\.runtime\.flow_run has no attribute 'x'"):
        flow_run.x  # noqa: B018
    with pytest.raises(AttributeError, match=r"millstream\.runtime\.task_run has no attribute 'y'"):
        task_run.y  # noqa: B018
    with pytest.raises(ImportError):
        exec("from millstream.runtime.flow_run import nope")


def test_runtime_reads_the_named_run_from_the_database(monkeypatch):
    # A process started for a recorded run (MILLSTREAM__FLOW_RUN_ID) reads its name,
    # parameters and run count outside the run's own context, as Prefect reads them from
    # its API.
    state = adder(4, return_state=True)
    run_id = state.state_details.flow_run_id
    monkeypatch.setenv("MILLSTREAM__FLOW_RUN_ID", str(run_id))
    assert flow_run.parameters == {"x": 4}
    assert flow_run.flow_name == "adder"
    assert flow_run.run_count == 1
    assert isinstance(flow_run.name, str) and flow_run.name


def test_client_sets_flow_run_states_and_updates_flow_runs():
    # prefect 3.9.1 (local server): set_flow_run_state returns an OrchestrationResult with
    # status ACCEPT and the state, for Running/Failed/Completed on a completed run, forced or
    # not; the history grows by each; update_flow_run(name=, tags=, parameters=) changes them.
    from millstream import get_client
    from millstream.client.schemas.responses import OrchestrationResult, SetStateStatus
    from millstream.exceptions import ObjectNotFound
    from millstream.states import Running

    run_id = adder(1, return_state=True).state_details.flow_run_id

    async def main() -> tuple[list[str], list[str], Any]:
        async with get_client() as client:
            statuses = []
            for state, force in (
                (Running(), False),
                (Failed(message="m"), False),
                (Running(), True),
            ):
                result = await client.set_flow_run_state(run_id, state, force=force)
                assert isinstance(result, OrchestrationResult)
                assert result.state is not None and result.state.type is state.type
                statuses.append(result.status)
            assert statuses == [SetStateStatus.ACCEPT] * 3
            names = [s.name or "" for s in await client.read_flow_run_states(run_id)]
            await client.update_flow_run(
                run_id, name="renamed", tags=["a", "b"], parameters={"x": 5}
            )
            run = await client.read_flow_run(run_id)
            with pytest.raises(ObjectNotFound):
                await client.update_flow_run(uuid.uuid4(), name="x")
            with pytest.raises(ObjectNotFound):
                await client.set_flow_run_state(uuid.uuid4(), Running())
            with pytest.raises(NotSupportedError, match="job_variables"):
                await client.update_flow_run(run_id, job_variables={"a": 1})
            return names, [run.name, run.tags, run.parameters, run.state_type.value]

    names, fields = asyncio.run(main())
    assert names == ["Pending", "Running", "Completed", "Running", "Failed", "Running"]
    assert fields == ["renamed", ["a", "b"], {"x": 5}, "RUNNING"]
    with get_client(sync_client=True) as client:
        client.set_flow_run_name(run_id, "sync-renamed")
        assert client.read_flow_run(run_id).name == "sync-renamed"


def test_resume_flow_run_in_a_sync_flow_under_a_running_loop_runs_now():
    # Prefect's rule: inside a sync run the call blocks (it is not a coroutine left unawaited).
    from millstream import resume_flow_run
    from millstream.exceptions import ObjectNotFound

    @flow
    def resumes_unknown() -> str:
        try:
            resume_flow_run(uuid.uuid4())
        except ObjectNotFound:
            return "ran"
        return "not run"

    async def main() -> str:
        return resumes_unknown()

    assert asyncio.run(main()) == "ran"


def test_runtime_deployment_reads_the_env_named_run(monkeypatch):
    # prefect 3.9.1 reads deployment.id through PREFECT__FLOW_RUN_ID's flow run when no run is
    # active; a deployment run created (not started) here is found the same way.
    from millstream.deployments import run_deployment
    from millstream.runtime import deployment

    adder.to_deployment("env-dep", parameters={"x": 2}).apply()
    run = run_deployment("adder/env-dep", timeout=0)
    assert deployment.id is None
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", str(run.id))
    assert deployment.name == "env-dep"
    assert deployment.flow_run_id == str(run.id)
    assert deployment.parameters == {"x": 2}
