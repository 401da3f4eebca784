"""Submit, map, futures, waiting, upstream failures and the thread-pool task runner."""

from __future__ import annotations

import asyncio
import threading

import pytest

from millstream import allow_failure, as_completed, flow, quote, task, unmapped, wait
from millstream.exceptions import MappingLengthMismatch, MappingMissingIterable, UnfinishedRun
from millstream.futures import PrefectFuture, PrefectFutureList
from millstream.states import StateType
from millstream.task_runners import ThreadPoolTaskRunner


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def boom() -> None:
    raise ValueError("upstream broke")


def test_submit_returns_futures_with_results_states_and_ids():
    @flow
    def f() -> tuple:
        fut = add.submit(1, 2)
        assert isinstance(fut, PrefectFuture)
        fut.wait()
        return fut.result(), fut.state.type, fut.task_run_id

    value, state_type, run_id = f()
    assert (value, state_type) == (3, StateType.COMPLETED)
    assert run_id.version in (4, 7)


def test_submit_outside_a_flow_raises():
    with pytest.raises(RuntimeError, match="outside of a flow"):
        add.submit(1)


def test_map_zips_and_broadcasts_and_unmapped_passes_whole():
    @task
    def combine(x: int, y: int, extra: list) -> tuple:
        return x, y, len(extra)

    @flow
    def f() -> list:
        return combine.map([1, 2, 3], 10, unmapped([7, 8])).result()

    assert f() == [(1, 10, 2), (2, 10, 2), (3, 10, 2)]


def test_map_returns_a_future_list_and_zips_several_iterables():
    @flow
    def f():
        futures = add.map([1, 2], [10, 20])
        assert isinstance(futures, PrefectFutureList)
        return futures.result()

    assert f() == [11, 22]


def test_map_length_mismatch_and_missing_iterable():
    @flow
    def mismatch():
        add.map([1, 2], [1])

    @flow
    def nothing():
        add.map(1, 2)

    with pytest.raises(MappingLengthMismatch):
        mismatch()
    with pytest.raises(MappingMissingIterable):
        nothing()


def test_quote_is_looked_through_by_map_and_kept_around_each_element():
    # prefect 3.9.1: map unwraps quote(...) to find what to iterate and re-quotes each element
    # (ident.map(quote([1, 2])) -> [1, 2]); pass a whole iterable with unmapped(...).
    @task
    def length(items: list, x: int) -> int:
        return len(items) + x

    @flow
    def f():
        return length.map(unmapped([1, 2, 3]), [0, 10]).result()

    @flow
    def g():
        return length.map(quote([[1], [1, 2]]), [0, 10]).result()

    assert f() == [3, 13]
    assert g() == [1, 12]


def test_futures_as_arguments_are_resolved_also_inside_collections():
    @task
    def total(items: list, mapping: dict) -> int:
        return sum(items) + sum(mapping.values())

    @flow
    def f() -> int:
        a = add.submit(1)
        b = add.submit(2)
        return total([a, b, 3], {"k": add.submit(4)})

    assert f() == 10


def test_failed_upstream_blocks_downstream_not_ready():
    @flow
    def f():
        upstream = boom.submit()
        downstream = add.submit(upstream)
        downstream.wait()
        with pytest.raises(UnfinishedRun):
            downstream.result()
        return downstream.state.type, downstream.state.name

    assert f() == (StateType.PENDING, "NotReady")


def test_allow_failure_lets_downstream_run_with_the_exception():
    @task
    def inspect_input(value: object) -> str:
        return type(value).__name__

    @flow
    def f() -> str:
        return inspect_input.submit(allow_failure(boom.submit())).result()

    assert f() == "ValueError"


def test_wait_for_orders_execution():
    order = []

    @task
    def first() -> None:
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def f() -> None:
        a = first.submit()
        second.submit(wait_for=[a]).wait()

    f()
    assert order == ["first", "second"]


def test_wait_and_as_completed_and_done_callbacks():
    gate = threading.Event()
    called = []

    @task
    def gated(x: int) -> int:
        if x == 0:
            gate.wait(5)
        return x

    @flow
    def f():
        futures = gated.map([0, 1, 2])
        futures[0].add_done_callback(lambda fut: called.append(fut.task_run_id))
        done, not_done = wait(futures[1:], timeout=5)
        assert len(done) == 2 and not not_done
        first_done = []
        gate.set()
        for fut in as_completed(futures, timeout=5):
            first_done.append(fut.result())
        return sorted(first_done), futures[0].task_run_id

    values, first_id = f()
    assert values == [0, 1, 2]
    assert called == [first_id]


def test_wait_times_out_with_not_done():
    gate = threading.Event()

    @task
    def blocked() -> None:
        gate.wait(5)

    @flow
    def f():
        fut = blocked.submit()
        done, not_done = wait([fut], timeout=0.05)
        gate.set()
        return len(done), len(not_done)

    assert f() == (0, 1)


def test_async_tasks_run_concurrently_as_coroutines_on_the_flow_loop():
    @task
    async def hop(x: int) -> tuple[int, int]:
        await asyncio.sleep(0.05)
        return x, id(asyncio.get_running_loop())

    @flow
    async def f():
        futures = hop.map(range(20))
        results = await futures
        return results, id(asyncio.get_running_loop())

    loop_start = asyncio.get_event_loop_policy()
    assert loop_start is not None
    results, loop_id = asyncio.run(f())
    assert [x for x, _ in results] == list(range(20))
    assert {lid for _, lid in results} == {loop_id}


def test_future_result_blocks_inside_a_sync_flow_on_async_tasks():
    @task
    async def aval(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @flow
    def f() -> list[int]:
        return aval.map([1, 2, 3]).result()

    assert f() == [2, 4, 6]


def test_thread_pool_max_workers_bounds_concurrency():
    lock = threading.Lock()
    running = [0]
    peak = [0]
    release = threading.Barrier(2, timeout=5)

    @task
    def worker(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if x < 2:
                release.wait()
        finally:
            with lock:
                running[0] -= 1
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f() -> list[int]:
        return worker.map(range(6)).result()

    assert f() == list(range(6))
    assert peak[0] == 2


def test_thread_pool_rejects_bad_max_workers():
    with pytest.raises(ValueError, match="max_workers"):
        ThreadPoolTaskRunner(max_workers=0)


def test_submit_with_return_state():
    @flow
    def f():
        return add.submit(1, return_state=True)

    # Checked on prefect 3.9.1: a returned run's state is aggregated ("All states completed.")
    # and the call gives back that State itself; its result is the task's result.
    state = f()
    assert state.is_completed() and state.result() == 1


def test_blocking_result_inside_an_async_flow_runs_the_queued_tasks_elsewhere():
    # Prefect users call future.result() in async flows; the loop is blocked meanwhile, so the
    # not-yet-started runs are handed to the engine loop thread instead of deadlocking.
    @task
    async def triple(x: int) -> int:
        await asyncio.sleep(0.01)
        return 3 * x

    @flow
    async def f() -> tuple[int, list[int]]:
        one = triple.submit(1)
        many = triple.map([1, 2, 3])
        return one.result(), many.result()

    assert asyncio.run(f()) == (3, [3, 6, 9])


def test_blocking_on_a_task_already_running_on_the_same_loop_is_a_clear_error():
    @task
    async def slow() -> int:
        await asyncio.sleep(0.05)
        return 1

    @flow
    async def f() -> str:
        fut = slow.submit()
        await asyncio.sleep(0.01)  # lets it start on this loop
        try:
            fut.result()
        except RuntimeError as exc:
            await fut
            return str(exc)
        return "no error"

    assert "await future" in asyncio.run(f())
