"""Fixtures of the task runner tests: one real Dask LocalCluster per module, runner factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from millstream.task_runners import (
    DaskTaskRunner,
    ProcessPoolTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
)

KINDS = ["thread", "process", "dask"]


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """A real two-worker LocalCluster (processes, one thread each), started once per module."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(params=KINDS)
def make_runner(request: pytest.FixtureRequest) -> Callable[..., TaskRunner]:
    """A factory of runners of one kind (keyword arguments: ``allow_pickle``)."""
    kind = request.param
    if kind == "thread":
        return lambda **_: ThreadPoolTaskRunner(max_workers=4)
    if kind == "process":
        return lambda **kw: ProcessPoolTaskRunner(max_workers=2, **kw)
    cluster = request.getfixturevalue("dask_cluster")
    return lambda **kw: DaskTaskRunner(address=cluster.scheduler_address, **kw)


@pytest.fixture
def kind(make_runner: Callable[..., TaskRunner]) -> str:
    return make_runner().name
