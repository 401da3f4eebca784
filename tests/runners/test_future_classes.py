"""Prefect's future classes (prefect.futures) and the runner objects' own API, as Prefect 3.9.1
behaves: futures built around a user's concurrent.futures.Future, the futures of submitted runs,
PrefectFutureList, wait, as_completed and the resolve_futures_to_* helpers."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid

import pytest

from millstream import flow, task
from millstream.futures import (
    PrefectConcurrentFuture,
    PrefectFuture,
    PrefectFutureList,
    PrefectTaskRunFuture,
    PrefectWrappedFuture,
    as_completed,
    resolve_futures_to_results,
    resolve_futures_to_states,
    wait,
)
from millstream.states import Completed, Failed
from millstream.task_runners import (
    ConcurrentTaskRunner,
    DaskTaskRunner,
    ProcessPoolTaskRunner,
    ThreadPoolTaskRunner,
)


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
def boom(x: int) -> int:
    raise ValueError(f"bad {x}")


def wrapped(result: object = None) -> tuple[PrefectConcurrentFuture, concurrent.futures.Future]:
    inner: concurrent.futures.Future = concurrent.futures.Future()
    if result is not None:
        inner.set_result(result)
    return PrefectConcurrentFuture(task_run_id=uuid.uuid4(), wrapped_future=inner), inner


def test_the_class_hierarchy_is_prefects():
    names = [c.__name__ for c in PrefectConcurrentFuture.__mro__][:4]
    assert names == [
        "PrefectConcurrentFuture",
        "PrefectWrappedFuture",
        "PrefectTaskRunFuture",
        "PrefectFuture",
    ]
    with pytest.raises(TypeError):
        PrefectFuture(uuid.uuid4())  # abstract


def test_a_wrapped_future_reads_the_state_its_future_resolves_to():
    future, inner = wrapped()
    assert future.state.is_pending()
    with pytest.raises(TimeoutError, match=f"Task run {future.task_run_id} did not complete"):
        future.result(timeout=0.01)
    future.wait(0.01)  # returns, does not raise
    inner.set_result(Completed(data=42))
    assert future.result() == 42 and future.state.is_completed()
    assert isinstance(future.wrapped_future, concurrent.futures.Future)

    plain, _ = wrapped(7)
    assert plain.result() == 7  # a plain value is the result itself

    failed, _ = wrapped(Failed(data=ValueError("x")))
    with pytest.raises(ValueError, match="x"):
        failed.result()
    assert repr(failed.result(raise_on_failure=False)) == "ValueError('x')"


def test_wait_and_as_completed_take_any_futures():
    done_one, _ = wrapped(Completed(data=1))
    pending, inner = wrapped()
    result = wait([done_one, pending], timeout=0.05)
    assert (len(result.done), len(result.not_done)) == (1, 1)
    with pytest.raises(ValueError, match="non-negative"):
        wait([pending], timeout=-1)
    threading.Timer(0.05, inner.set_result, (Completed(data=2),)).start()
    assert {f.result() for f in as_completed([done_one, pending, done_one])} == {1, 2}


def test_submitted_runs_give_concurrent_futures_and_lists():
    @flow
    def pipeline():
        one = add.submit(1)
        many = add.map([1, 2, 3])
        return (
            type(one).__name__,
            isinstance(one, PrefectWrappedFuture),
            isinstance(one, PrefectTaskRunFuture),
            type(many).__name__,
            many.result(),
            one.wrapped_future.result().is_completed(),
        )

    assert pipeline() == (
        "PrefectConcurrentFuture",
        True,
        True,
        "PrefectFutureList",
        [2, 3, 4],
        True,
    )


class _Settled(PrefectWrappedFuture):
    """A user's future subclass, as Prefect's own tests write them: sets _final_state."""

    def __init__(self, data: object) -> None:
        super().__init__(uuid.uuid4(), concurrent.futures.Future())
        self._final_state = Completed(data=data)

    def wait(self, timeout: float | None = None) -> None:
        pass

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> object:
        return self._final_state.result()


def test_resolving_reaches_into_lists_tuples_dicts_and_dataclasses():
    import dataclasses

    @dataclasses.dataclass
    class Holder:
        a: int
        item: object
        b: int = 2

    one, two = _Settled("foo"), _Settled("bar")
    assert resolve_futures_to_states(one).is_completed()
    assert resolve_futures_to_states(["a", one, ("b", two)]) == ["a", one.state, ("b", two.state)]
    assert resolve_futures_to_states({"k": [one]}) == {"k": [one.state]}
    assert resolve_futures_to_states(Holder(a=1, item=one)) == Holder(a=1, item=one.state)
    assert resolve_futures_to_results(Holder(a=1, item=[two])) == Holder(a=1, item=["bar"])
    assert resolve_futures_to_states([1, 2, 3]) == [1, 2, 3]


def test_resolve_futures_to_states_and_results():
    @flow
    def pipeline():
        a, b, bad = add.submit(1), add.submit(5), boom.submit(1)
        states = resolve_futures_to_states((a, [b]))
        results = resolve_futures_to_results({"a": [a, b], "n": 3})
        with pytest.raises(Exception, match="At least one result did not complete successfully"):
            resolve_futures_to_results([bad])
        return [s.is_completed() for s in (states[0], states[1][0])], results

    assert pipeline() == ([True, True], {"a": [2, 6], "n": 3})


def test_a_future_list_result_raises_a_failure_and_times_out_like_prefect():
    @flow
    def pipeline():
        futures = PrefectFutureList([add.submit(1), boom.submit(2)])
        with pytest.raises(ValueError, match="bad 2"):
            futures.result()
        pending, _ = wrapped()
        with pytest.raises(TimeoutError, match="Timed out waiting for all futures"):
            PrefectFutureList([pending]).result(timeout=0.01)
        return PrefectFutureList().result()

    assert pipeline() == []


def test_runner_objects_names_duplicates_and_start_rules():
    runner = ThreadPoolTaskRunner(max_workers=2)
    assert (runner.name, ProcessPoolTaskRunner().name, DaskTaskRunner().name) == (
        "threadpool",
        "processpool",
        "dask",
    )
    assert ConcurrentTaskRunner is ThreadPoolTaskRunner
    copy = runner.duplicate()
    assert copy == runner and copy is not runner
    assert ProcessPoolTaskRunner(3).duplicate() == ProcessPoolTaskRunner(3)
    assert ProcessPoolTaskRunner(3) != ProcessPoolTaskRunner(2) != "not a runner"
    import multiprocessing

    assert ProcessPoolTaskRunner().max_workers == multiprocessing.cpu_count()
    with pytest.raises(RuntimeError, match="The task runner must be started before submitting"):
        runner.map(add, {"x": [1]})
    with runner:
        with pytest.raises(RuntimeError, match="This task runner is already started"):
            runner.__enter__()
        assert runner.submit(add, {"x": 1, "y": 2}).result() == 3
        futures = runner.map(add, {"x": [1, 2], "y": 10})
        assert isinstance(futures, PrefectFutureList) and futures.result() == [11, 12]


def _factory():
    return lambda kind, payload: (kind, payload)


def test_process_pool_message_processor_factories_are_kept_and_duplicated():
    runner = ProcessPoolTaskRunner(max_workers=1, subprocess_message_processor_factories=[_factory])
    assert runner.subprocess_message_processor_factories == (_factory,)
    assert runner.duplicate().subprocess_message_processor_factories == (_factory,)
    runner.set_subprocess_message_processor_factories([])
    assert runner.subprocess_message_processor_factories == ()
    runner._started = True
    with pytest.raises(RuntimeError, match="while task runner is started"):
        runner.subprocess_message_processor_factories = [_factory]


def test_bad_runner_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolTaskRunner(max_workers=0)
    with pytest.raises(ValueError, match="address"):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster_kwargs={"n_workers": 1})
    with pytest.raises(ValueError, match="`client_kwargs`"):
        DaskTaskRunner(client_kwargs={"asynchronous": True})
    with pytest.raises(ValueError, match="`cluster_kwargs`"):
        DaskTaskRunner(cluster_kwargs={"asynchronous": True})


def test_a_dask_cluster_class_given_by_name_is_imported():
    distributed = pytest.importorskip("distributed")
    runner = DaskTaskRunner(cluster_class="distributed.deploy.spec.SpecCluster")
    assert runner.cluster_class is distributed.deploy.spec.SpecCluster
    assert DaskTaskRunner().cluster_class is None  # the default is settled when first used


@task(persist_result=True)
def kept(x: int) -> int:
    return x + 1


def test_a_distributed_future_reads_a_run_it_did_not_start_from_the_store():
    from millstream.futures import PrefectDistributedFuture

    with ThreadPoolTaskRunner() as runner:
        done = runner.submit(kept, {"x": 1})
        done.wait()
    future = PrefectDistributedFuture(done.task_run_id)
    assert future.result(timeout=5) == 2 and future.state.is_completed()
    assert future == PrefectDistributedFuture(done.task_run_id)
    with pytest.raises(TimeoutError, match=r"did not complete within 0\.1 seconds"):
        PrefectDistributedFuture(uuid.uuid4()).result(timeout=0.1)


@task
async def forever() -> None:
    import asyncio

    await asyncio.sleep(60)


def test_cancel_all_stops_what_a_started_runner_still_runs():
    import time

    with ThreadPoolTaskRunner() as runner:
        future = runner.submit(forever, {})
        deadline = time.monotonic() + 10
        while not future.state.is_running() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert future.state.is_running()
        runner.cancel_all()
        future.wait(10)
        assert future.state.is_crashed()
    runner.cancel_all()  # not started: nothing to do
