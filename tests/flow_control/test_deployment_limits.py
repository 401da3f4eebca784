"""A deployment's ``concurrency_limit``: served runs beyond it wait (ENQUEUE) or are
cancelled (CANCEL_NEW)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from serving_tools import with_worker

from millstream import flow
from millstream.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from millstream.deployments import arun_deployment

_lock = threading.Lock()
_running = [0, 0]
_release = threading.Event()


@flow
async def guarded(i: int) -> int:
    with _lock:
        _running[0] += 1
        _running[1] = max(_running)
    await asyncio.to_thread(_release.wait, 30)
    with _lock:
        _running[0] -= 1
    return i


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _states(runs):
    return [r.state.type.value for r in runs]


def test_enqueue_keeps_runs_scheduled_until_a_slot_frees() -> None:
    _running[:] = [0, 0]
    _release.clear()
    deployment = guarded.to_deployment("limited", concurrency_limit=2)

    async def body():
        runs = [await arun_deployment("guarded/limited", {"i": i}, timeout=0) for i in range(4)]

        async def two_running() -> bool:
            return _running[0] == 2

        await _until(two_running)
        from millstream import get_client

        async with get_client() as client:
            states = [await client.read_flow_run(r.id) for r in runs]
            assert sorted(_states(states)).count("SCHEDULED") == 2
            _release.set()
            finals = [await arun_deployment_wait(client, r.id) for r in runs]
        return finals

    finals = asyncio.run(with_worker([deployment], body))
    assert finals == ["COMPLETED"] * 4
    assert _running[1] == 2


async def arun_deployment_wait(client, run_id) -> str:
    async def done() -> bool:
        return (await client.read_flow_run(run_id)).state.is_final()

    await _until(done)
    return (await client.read_flow_run(run_id)).state.type.value


def test_cancel_new_cancels_runs_that_find_the_limit_full() -> None:
    _running[:] = [0, 0]
    _release.clear()
    config = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    deployment = guarded.to_deployment("cancelling", concurrency_limit=config)

    async def body():
        from millstream import get_client

        first = await arun_deployment("guarded/cancelling", {"i": 0}, timeout=0)

        async def one_running() -> bool:
            return _running[0] == 1

        await _until(one_running)
        second = await arun_deployment("guarded/cancelling", {"i": 1}, timeout=0)
        async with get_client() as client:
            second_state = await arun_deployment_wait(client, second.id)
            _release.set()
            first_state = await arun_deployment_wait(client, first.id)
        return first_state, second_state

    assert asyncio.run(with_worker([deployment], body)) == ("COMPLETED", "CANCELLED")


def test_bad_concurrency_limit_values_are_refused() -> None:
    with pytest.raises(TypeError, match="concurrency_limit"):
        guarded.to_deployment("bad", concurrency_limit="3")
    with pytest.raises(ValueError, match="collision_strategy"):
        ConcurrencyLimitConfig(limit=1, collision_strategy="DROP")


_steps: list[str] = []


@flow
async def approve_served() -> str:
    from millstream.flow_runs import asuspend_flow_run

    _steps.append("before")
    answer = await asuspend_flow_run(wait_for_input=dict, timeout=60)
    _steps.append("after")
    return answer["ok"]


def test_a_suspended_deployment_run_is_continued_by_its_worker_once_resumed() -> None:
    from millstream import get_client
    from millstream.flow_runs import aresume_flow_run

    _steps.clear()
    deployment = approve_served.to_deployment("approvals")

    async def body():
        run = await arun_deployment("approve-served/approvals", timeout=0)
        async with get_client() as client:

            async def suspended() -> bool:
                state = (await client.read_flow_run(run.id)).state
                return state is not None and state.name == "Suspended"

            await _until(suspended)
            await aresume_flow_run(run.id, run_input={"ok": "yes"})
            assert await arun_deployment_wait(client, run.id) == "COMPLETED"
            return await (await client.read_flow_run(run.id)).state.result()

    assert asyncio.run(with_worker([deployment], body)) == "yes"
    # The body ran twice (suspended, then continued); "before" has no task, so it ran again,
    # and the suspend call returned the input the second time.
    assert _steps == ["before", "before", "after"]
