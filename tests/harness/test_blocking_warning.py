"""A sync task called directly inside an async flow blocks the loop (as in Prefect): the run's
logs say so once per task, naming the task and the fix."""

from __future__ import annotations

import asyncio

from millstream import flow, task
from millstream.testing import RunReader


@task
def blocking_step(x: int) -> int:
    return x + 1


@task
def other_step(x: int) -> int:
    return x


@task
async def async_step(x: int) -> int:
    return x


@flow
async def async_pipeline() -> int:
    total = 0
    for i in range(3):
        total += blocking_step(i)
    total += other_step(1)
    total += await async_step(1)
    total += blocking_step.submit(1).result()
    return total


@flow
def sync_pipeline() -> int:
    return blocking_step(1)


def _warnings() -> list[str]:
    return [line.message for line in RunReader().logs() if "blocks the event loop" in line.message]


def test_a_sync_task_called_in_an_async_flow_is_warned_about_once_per_task():
    assert asyncio.run(async_pipeline()) == 3 + 3 + 1 + 1 + 2
    said = _warnings()
    assert len(said) == 2
    first = said[0]
    assert "'blocking_step'" in first and "'async-pipeline'" in first
    assert "await" in first and "blocking_step.submit(...)" in first
    assert "'other_step'" in said[1]
    asyncio.run(async_pipeline())
    assert len(_warnings()) == 2  # once per task, not per call or per run


def test_sync_flows_and_async_tasks_are_not_warned_about():
    assert sync_pipeline() == 2
    assert _warnings() == []
