"""The sync bridge and the thread-pool task runner: blocking waits, concurrency, exiting.

Scripts that could deadlock run in a subprocess with a timeout: a hang there must fail the
test, not freeze the engine loop thread of the test process for every later test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from millstream import flow, task
from millstream.task_runners import ThreadPoolTaskRunner

ROOT = Path(__file__).resolve().parents[2]


def run_script(source: str, home: Path, timeout: float = 60.0) -> str:
    """Run ``source`` in a fresh interpreter; fail if it does not exit 0 within ``timeout``."""
    env = dict(os.environ, MILLSTREAM_HOME=str(home), PYTHONPATH=str(ROOT))
    env.pop("MILLSTREAM_DATABASE_PATH", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(source)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"script did not exit within {timeout} s (deadlock); stdout: {exc.stdout!r}")
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- deadlock A: a sync wait on the loop's own thread -------------------------------------------
SYNC_WAIT_IN_ASYNC_TASK = """
    import asyncio
    from millstream import flow, task

    @task
    def inner_sync(x):
        return x + 1

    @task
    async def inner_async(x):
        return x + 1

    @task
    async def outer_sync_inner():
        return inner_sync.submit(1).result()

    @task
    async def outer_async_inner():
        return inner_async.submit(1).result()

    @task
    async def outer_nested():
        # The stolen run itself waits synchronously for a run it submits (and so on).
        return outer_async_inner.submit().result() + outer_sync_inner.submit().result()

    @flow
    async def async_flow_direct(outer):
        return await outer()

    @flow
    async def async_flow_submit(outer):
        return await outer.submit()

    @flow
    def sync_flow_submit(outer):
        return outer.submit().result()

    @task
    async def outer_of(i):
        return inner_async.submit(i).result() + inner_sync.submit(i).result()

    @flow
    def sync_flow_map():
        return outer_of.map(range(3)).result()

    for outer in (outer_sync_inner, outer_async_inner):
        print(asyncio.run(async_flow_direct(outer)))
        print(asyncio.run(async_flow_submit(outer)))
        print(sync_flow_submit(outer))
    print(asyncio.run(async_flow_submit(outer_nested)), sync_flow_submit(outer_nested))
    print(sync_flow_map())
"""


def test_sync_result_inside_an_async_task_returns_the_value(millstream_home: Path) -> None:
    out = run_script(SYNC_WAIT_IN_ASYNC_TASK, millstream_home)
    assert out.split() == ["2"] * 6 + ["4", "4", "[2,", "4,", "6]"]


def test_waiting_for_a_moved_run_before_its_lane_started(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lanes start one after another (each once the previous one ended), so the flow waits for
    # the second run while it is moved but not yet running anywhere.
    from millstream._engine.bridge import executors

    real = executors.run_on_lane
    lanes: list[Any] = []
    lock = threading.Lock()

    def serial_lanes(coro: Any, context: Any) -> Any:
        gate: Any = concurrent.futures.Future()
        with lock:
            previous = lanes[-1] if lanes else None
            lanes.append(gate)

        def relay(done: Any) -> None:
            error = done.exception()
            if error is not None:
                gate.set_exception(error)
            else:
                gate.set_result(done.result())

        def start(_: object = None) -> None:
            real(coro, context).add_done_callback(relay)

        if previous is None:
            start()
        else:
            previous.add_done_callback(start)
        return gate

    monkeypatch.setattr(executors, "run_on_lane", serial_lanes)

    @task
    async def double(x: int) -> int:
        return 2 * x

    @flow
    async def f() -> list[int]:
        return double.map(range(5)).result()

    assert asyncio.run(f()) == [0, 2, 4, 6, 8]
    assert len(lanes) == 5


def test_a_flow_timeout_stops_runs_moved_off_a_blocked_loop(millstream_home: Path) -> None:
    source = """
        import asyncio, time
        from millstream import flow, task

        @task
        async def sleeper():
            await asyncio.sleep(60)

        @task
        async def outer():
            return sleeper.submit().result()  # moves sleeper to a lane, blocks this loop

        @flow(timeout_seconds=0.5)
        def f():
            outer.submit().wait()

        start = time.monotonic()
        state = f(return_state=True)
        print(state.name, time.monotonic() - start < 20)
    """
    assert run_script(source, millstream_home, timeout=40).split() == ["TimedOut", "True"]


# -- deadlock B: recursive waits deeper than the pool ---------------------------------------------
RECURSIVE_SUBMIT = """
    from millstream import flow, task
    from millstream.task_runners import ThreadPoolTaskRunner

    @task
    def rec(n):
        if n == 0:
            return 0
        return rec.submit(n - 1).result() + 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def bounded():
        return rec.submit(5).result()

    @flow
    def unbounded():
        return rec.submit(5).result()

    @flow
    def after():
        return [f.result() for f in [rec.submit(0), rec.submit(1)]]

    print(bounded(), unbounded(), after())
"""


def test_recursive_waits_deeper_than_max_workers_finish_and_the_process_exits(
    millstream_home: Path,
) -> None:
    assert run_script(RECURSIVE_SUBMIT, millstream_home).split() == ["5", "5", "[0,", "1]"]


BOUNDED_WAITS = """
    import asyncio
    from millstream import as_completed, flow, task
    from millstream.task_runners import ThreadPoolTaskRunner

    @task
    def inner_sync(x):
        return x + 1

    @task
    async def inner_async(x):
        return x + 1

    @task
    async def outer(x):
        # A sync wait on the loop's thread by a run that holds the only slot.
        return inner_sync.submit(x).result() + inner_async.submit(x).result()

    @task
    async def arec(n):
        return 0 if n == 0 else await arec.submit(n - 1) + 1

    @task
    def fan(n):
        return sorted(f.result() for f in as_completed(inner_sync.map(range(n))))

    one = ThreadPoolTaskRunner(max_workers=1)

    @flow(task_runner=one)
    def sync_flow():
        return outer.submit(1).result(), outer.map([1, 2]).result(), fan.submit(3).result()

    @flow(task_runner=one)
    async def async_flow():
        return await outer.submit(1), await arec.submit(5), fan.submit(3).result()

    print(sync_flow(), asyncio.run(async_flow()))
"""


def test_waits_of_runs_holding_the_only_slot_finish(millstream_home: Path) -> None:
    out = run_script(BOUNDED_WAITS, millstream_home, timeout=30)
    assert out.strip() == "(4, [4, 6], [1, 2, 3]) (4, 5, [1, 2, 3])"


def test_a_wait_on_a_worker_gives_its_slot_back_but_the_bound_holds() -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]

    @task
    def rec(n: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if n == 0:
                return 0
            # Not counted as running while it waits: it holds no slot then.
            with lock:
                running[0] -= 1
            try:
                return rec.submit(n - 1).result() + 1
            finally:
                with lock:
                    running[0] += 1
        finally:
            with lock:
                running[0] -= 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f() -> int:
        return rec.submit(4).result()

    assert f() == 4
    assert peak[0] == 1


# -- task runner concurrency ----------------------------------------------------------------------
def test_default_runner_runs_every_submitted_sync_task_at_once() -> None:
    barrier = threading.Barrier(100, timeout=20)

    @task
    def meet(i: int) -> int:
        barrier.wait()  # BrokenBarrierError unless all 100 bodies run at the same time
        return i

    @flow
    def f() -> list[int]:
        return meet.map(range(100)).result()

    assert f() == list(range(100))


def test_default_runner_concurrency_in_an_async_flow() -> None:
    barrier = threading.Barrier(40, timeout=20)

    @task
    def meet(i: int) -> int:
        barrier.wait()
        return i

    @flow
    async def f() -> list[int]:
        return await meet.map(range(40))

    assert asyncio.run(f()) == list(range(40))


@pytest.mark.parametrize("n", [1, 3])
def test_max_workers_bounds_concurrently_running_bodies(n: int) -> None:
    lock = threading.Lock()
    running = [0]
    peak = [0]
    full = threading.Barrier(n, timeout=10)

    @task
    def body(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if i < n:
                full.wait()  # the bound is reached, not only respected
            time.sleep(0.002)
        finally:
            with lock:
                running[0] -= 1
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=n))
    def f() -> list[int]:
        return body.map(range(4 * n + 4)).result()

    assert f() == list(range(4 * n + 4))
    assert peak[0] == n


def test_default_max_workers_is_unbounded_like_prefect() -> None:
    assert ThreadPoolTaskRunner().max_workers == sys.maxsize
    assert ThreadPoolTaskRunner().max_concurrency() is None
    assert ThreadPoolTaskRunner(4).max_workers == 4


def test_thread_pool_max_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS", "3")
    runner = ThreadPoolTaskRunner()
    assert runner.max_workers == 3
    assert runner.max_concurrency() == 3
    assert ThreadPoolTaskRunner(5).max_workers == 5


def test_pool_threads_do_not_keep_the_process_alive(millstream_home: Path) -> None:
    # A body still running when the main thread ends (a flow left it behind on timeout)
    # must not hold up the interpreter's exit.
    source = """
        import threading, time
        from millstream import flow, task

        started = threading.Event()

        @task
        def forever():
            started.set()
            threading.Event().wait()

        @flow(timeout_seconds=0.5)
        def f():
            forever.submit()
            started.wait(10)
            time.sleep(5)

        print(f(return_state=True).type.value)
    """
    assert run_script(source, millstream_home, timeout=30).strip() == "FAILED"


def test_stuck_bodies_of_an_async_flow_do_not_keep_the_process_alive(millstream_home: Path) -> None:
    # The same for an async flow on the main thread's loop, and for a timed-out sync task.
    source = """
        import asyncio, threading, time
        from millstream import flow, task

        started = threading.Event()

        @task
        def forever():
            started.set()
            threading.Event().wait()

        @task(timeout_seconds=0.2)
        def stuck():
            threading.Event().wait()

        @flow(timeout_seconds=0.5)
        async def f():
            forever.submit()
            await asyncio.to_thread(started.wait, 10)
            await asyncio.sleep(5)

        @flow
        async def g():
            return stuck(return_state=True).name  # a sync task blocks, even in an async flow

        print(asyncio.run(f(return_state=True)).name, asyncio.run(g()))
    """
    assert run_script(source, millstream_home, timeout=30).split() == ["TimedOut", "TimedOut"]


# -- a sync flow called on a running loop ---------------------------------------------------------
@flow
def sleepy_sync_flow(seconds: float) -> str:
    time.sleep(seconds)
    return threading.current_thread().name


async def _max_gap_while(call: object) -> tuple[object, float]:
    """Run ``call`` (a coroutine) while a ticker measures the loop's longest stall."""
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    try:
        value = await call  # type: ignore[misc]
    finally:
        await asyncio.sleep(0.05)
        stop.set()
        await tick
    return value, max(gaps)


def test_sync_flow_called_on_a_loop_blocks_it_only_for_the_run() -> None:
    sleepy_sync_flow(0)  # the engine loop thread and the database are up

    async def direct() -> str:
        return sleepy_sync_flow(0.3)

    async def main() -> tuple[object, float]:
        return await _max_gap_while(direct())

    name, gap = asyncio.run(main())
    # The body runs on the calling thread (the loop's); the loop stalls for the body, plus
    # the engine's bookkeeping, which is small.
    assert name == threading.current_thread().name
    assert 0.3 <= gap < 0.3 + 0.25


@pytest.mark.parametrize("to_thread", [anyio.to_thread.run_sync, asyncio.to_thread])
def test_sync_flow_in_a_worker_thread_does_not_block_the_loop(to_thread: Any) -> None:
    sleepy_sync_flow(0)

    async def main() -> tuple[object, float]:
        return await _max_gap_while(to_thread(sleepy_sync_flow, 0.5))

    name, gap = asyncio.run(main())
    assert name != threading.current_thread().name
    assert gap < 0.25


def test_sync_flow_submitting_tasks_on_a_loop_does_not_block_it_beyond_its_run() -> None:
    @task
    def nap(x: int) -> int:
        time.sleep(0.1)
        return x

    @flow
    def fan_out() -> int:
        return sum(nap.map(range(20)).result())

    fan_out()

    async def direct() -> int:
        return fan_out()

    async def main() -> tuple[object, float]:
        return await _max_gap_while(direct())

    total, gap = asyncio.run(main())
    assert total == sum(range(20))
    # Twenty 0.1 s bodies run at once: the loop is held about 0.1 s, not 20 x 0.1 s.
    assert gap < 0.1 + 0.2


# -- timeouts of sync bodies ------------------------------------------------------------------
def test_sync_body_timeouts_end_at_the_deadline_under_a_tracer(millstream_home: Path) -> None:
    # Under a tracer (coverage, a debugger) a timed-out sync body must still end its run at the
    # deadline: the body's thread is abandoned, not interrupted.
    source = """
        import sys, threading, time
        from millstream import flow, task

        def tracer(frame, event, arg):
            return tracer

        @task(timeout_seconds=0.2)
        def blocks():
            time.sleep(3)

        @flow(timeout_seconds=0.2)
        def flow_blocks():
            time.sleep(3)

        @flow
        def submits():
            return blocks.submit().wait() or 'waited'

        submits()  # warm up the engine loop thread and the database
        sys.settrace(tracer)
        threading.settrace(tracer)
        for call in (blocks, flow_blocks):
            start = time.monotonic()
            state = call(return_state=True)
            print(state.name, time.monotonic() - start < 1.0)
        start = time.monotonic()
        submits()
        print(time.monotonic() - start < 1.0)
    """
    out = run_script(source, millstream_home, timeout=40).split()
    assert out == ["TimedOut", "True", "TimedOut", "True", "True"]


def test_an_abandoned_timed_out_body_runs_on_and_its_outcome_is_dropped() -> None:
    release = threading.Event()
    finished = threading.Event()

    @task(timeout_seconds=0.1)
    def late() -> str:
        release.wait(10)
        finished.set()
        return "late"

    states: list[Any] = []

    @flow
    def f() -> str:
        states.append(late(return_state=True))
        return "flow done"

    assert f() == "flow done"
    assert states[0].name == "TimedOut"
    release.set()
    assert finished.wait(5)  # the thread was left to finish, not killed
    assert states[0].name == "TimedOut"


# -- one outcome, every waiter ---------------------------------------------------------------
def test_every_kind_of_waiter_sees_the_one_final_state() -> None:
    # Waiters on the run's loop, on another loop, on a thread and a done callback all get the
    # same final state, settled once.
    gate = threading.Event()
    seen: dict[str, Any] = {}

    @task
    async def slow(x: int) -> int:
        await asyncio.to_thread(gate.wait, 10)
        return x * 10

    @flow
    async def f() -> dict[str, Any]:
        target = slow.submit(1)
        target.add_done_callback(lambda fut: seen.setdefault("callback", fut.state))
        box: list[Any] = []
        thread = threading.Thread(target=lambda: box.append(target.result(timeout=20)))
        thread.start()
        other_loop = asyncio.ensure_future(asyncio.to_thread(asyncio.run, target.await_state()))
        engine_future = target._engine_future
        deadline = time.monotonic() + 10
        while engine_future._event is None or not engine_future._waiters:  # both wait now
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        gate.set()
        seen["here"] = await target
        seen["other loop"] = await (await other_loop).aresult()
        thread.join(20)
        seen["thread"] = box[0]
        return seen

    out = asyncio.run(f())
    assert out["callback"].is_completed()
    assert [out[k] for k in ("here", "other loop", "thread")] == [10, 10, 10]
