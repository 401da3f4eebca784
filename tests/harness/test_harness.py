"""The test harness users get (millstream.testing): hermetic, quick, leaves nothing running;
its clocks; and the pytest plugin's fixtures, run as a real pytest session (with xdist)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

from millstream import flow, task
from millstream._engine.settings import get_current_settings
from millstream.testing import FastClock, FrozenClock, millstream_test_harness


@task
def double(x: int) -> int:
    return 2 * x


@flow
def small(n: int = 2) -> int:
    return double(n) + 1


@flow
async def small_async(n: int = 2) -> int:
    return double(n) + 1


def _store_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "millstream-store" and t.is_alive())


def test_a_harness_records_into_a_temporary_database_and_cleans_up():
    outer = get_current_settings()
    outer_env = os.environ.get("MILLSTREAM_HOME")
    threads = _store_threads()
    with millstream_test_harness() as harness:
        home = harness.home
        assert home != outer.home and harness.database_path == home / "millstream.db"
        assert get_current_settings().database_path == harness.database_path
        assert os.environ["MILLSTREAM_DATABASE_PATH"] == str(harness.database_path)
        assert small() == 5
        assert harness.database_path.exists()
        [run] = harness.runs.flow_runs()
        assert (run.name, run.state_name) == (run.name, "Completed")
        assert [t.task_name for t in harness.runs.task_runs(run.id)] == ["double"]
        assert _store_threads() == threads + 1
    assert not home.exists()
    assert get_current_settings().database_path == outer.database_path
    assert os.environ.get("MILLSTREAM_HOME") == outer_env
    assert _store_threads() == threads


def test_the_home_directory_in_the_environment_is_never_touched(tmp_path, monkeypatch):
    users = tmp_path / "users-home"
    monkeypatch.setenv("MILLSTREAM_HOME", str(users))
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(users / "real.db"))
    with millstream_test_harness() as harness:
        small()
        assert harness.runs.last_flow_run().state_name == "Completed"
    assert not users.exists()
    assert os.environ["MILLSTREAM_DATABASE_PATH"] == str(users / "real.db")


def test_without_exporting_the_settings_context_alone_points_at_the_temporary_database(
    tmp_path, monkeypatch
):
    users = tmp_path / "users-home"
    monkeypatch.setenv("MILLSTREAM_DATABASE_PATH", str(users / "real.db"))
    with millstream_test_harness(export_environment=False) as harness:
        assert os.environ["MILLSTREAM_DATABASE_PATH"] == str(users / "real.db")
        assert small() == 5
        assert len(harness.runs.flow_runs()) == 1
    assert not users.exists()


def test_settings_given_to_the_harness_apply_inside_it_only():
    with millstream_test_harness(settings={"tasks.default_retries": 3}) as harness:
        assert harness.settings.tasks.default_retries == 3
    assert get_current_settings().tasks.default_retries == 0


def test_an_async_harness_works_on_the_callers_loop():
    async def main() -> tuple[int, str]:
        async with millstream_test_harness() as harness:
            result = await small_async()
            return result, harness.runs.last_flow_run().state_name

    assert asyncio.run(main()) == (5, "Completed")


def test_a_harness_cannot_be_entered_twice():
    harness = millstream_test_harness()
    with harness, pytest.raises(RuntimeError, match="already entered"), harness:
        pass


def test_harnesses_are_isolated_from_each_other():
    with millstream_test_harness() as first:
        small()
        with millstream_test_harness() as second:
            small()
            small()
            assert len(second.runs.flow_runs()) == 2
        assert len(first.runs.flow_runs()) == 1


def test_a_harness_and_a_flow_take_milliseconds():
    # Warm the import and the engine's process-wide threads; then time the pair (the benchmark
    # reports the figure; this bound only catches an accidental sleep or server start).
    with millstream_test_harness():
        small()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        with millstream_test_harness():
            small()
        best = min(best, time.perf_counter() - start)
    assert best < 0.5


# -- clocks --------------------------------------------------------------------------------------

FLAKY: dict[str, int] = {}


@task(retries=2, retry_delay_seconds=3600)
def flaky(key: str) -> str:
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] < 3:
        raise ValueError("not yet")
    return "ok"


@flow
def uses_flaky(key: str) -> str:
    return flaky(key)


def test_a_fast_clock_skips_retry_delays_and_the_timestamps_move_on():
    clock = FastClock()
    with millstream_test_harness(clock=clock) as harness:
        started = time.monotonic()
        assert uses_flaky("fast") == "ok"
        assert time.monotonic() - started < 30
        [tr] = harness.runs.task_runs()
        states = harness.runs.states(tr.id)
    assert [s.name for s in states].count("AwaitingRetry") == 2
    assert clock.slept == 7200
    assert (states[-1].timestamp - states[0].timestamp).total_seconds() >= 7200


def test_a_frozen_clock_holds_a_retry_until_it_is_advanced():
    clock = FrozenClock()
    outcome: list[str] = []
    with millstream_test_harness(clock=clock):
        worker = threading.Thread(target=lambda: outcome.append(uses_flaky("frozen")))
        worker.start()
        deadline = time.monotonic() + 30
        for expected in (1, 2):
            while clock.sleepers == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert FLAKY["frozen"] == expected and outcome == []
            clock.advance(3599)
            assert clock.sleepers == 1  # not due yet
            clock.advance(1)
            while clock.sleepers and time.monotonic() < deadline:
                time.sleep(0.005)
        worker.join(30)
    assert outcome == ["ok"]


def test_a_frozen_clock_wakes_sync_sleepers_and_never_goes_back():
    clock = FrozenClock()
    before = clock.now()
    woke = threading.Event()
    t = threading.Thread(target=lambda: (clock.sleep_sync(5), woke.set()))
    t.start()
    deadline = time.monotonic() + 10
    while clock.sleepers == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not woke.is_set()
    clock.advance(-10)
    assert clock.now() == before
    clock.advance(5)
    assert woke.wait(10)
    t.join(10)


# -- the pytest plugin, in a pytest session of its own --------------------------------------------

PLUGIN_SUITE = """
import os
import threading

import pytest

from millstream import flow, task


@task(retries=1, retry_delay_seconds=600)
def sometimes(seen: list) -> int:
    seen.append(1)
    if len(seen) == 1:
        raise RuntimeError("first time")
    return len(seen)


@flow
def pipeline(tag: str) -> int:
    return sometimes([])


@pytest.mark.parametrize("tag", [f"t{i}" for i in range(8)])
def test_each_test_has_a_database_of_its_own(tag, millstream_harness, millstream_runs,
                                             millstream_clock):
    assert pipeline(tag) == 2
    [run] = millstream_runs.flow_runs()
    assert run.parameters == {"tag": tag}
    assert millstream_clock.slept == 600
    path = str(millstream_harness.database_path)
    assert "millstream-home" in path and os.path.exists(path)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {path}\\n")


def test_the_session_harness_is_shared(millstream_session_harness, millstream_runs,
                                       millstream_clock):
    pipeline("session")
    assert len(millstream_runs.flow_runs(flow_name="pipeline")) >= 1


def test_the_frozen_clock_stands_still(millstream_frozen_clock):
    before = millstream_frozen_clock.now()
    assert millstream_frozen_clock.now() == before
    assert millstream_frozen_clock.advance(60) > before


def test_a_retry_delay_without_a_fast_clock_is_real(millstream_harness):
    assert sometimes.with_options(retry_delay_seconds=0.05)([]) == 2
"""


@pytest.mark.slow
def test_the_plugin_fixtures_under_xdist(tmp_path):
    (tmp_path / "test_user_flows.py").write_text(textwrap.dedent(PLUGIN_SUITE))
    ledger = tmp_path / "ledger.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
    env["LEDGER"] = str(ledger)
    env["HOME"] = str(tmp_path / "user-home")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "11 passed" in proc.stdout
    entries = [line.split() for line in ledger.read_text().splitlines()]
    assert len(entries) == 8
    assert len({path for _, path in entries}) == 8  # one database per test
    assert {worker for worker, _ in entries} == {"gw0", "gw1"}
    # Decorating a flow at import reads the default settings, whose loading creates the default
    # home directory (tests/unit/test_settings.py asserts that); nothing is recorded there.
    assert list((tmp_path / "user-home").rglob("*.db")) == []


@flow
def hourly() -> str:
    return "tick"


def test_a_frozen_clock_drives_a_workers_schedule():
    # A worker in this loop serves an hourly schedule; nothing is due until the clock is moved
    # on an hour, then exactly one scheduled run is created and run.
    from millstream import aserve, get_client
    from millstream._engine.settings import temporary_settings
    from millstream.testing import RunReader

    clock = FrozenClock()
    runs = RunReader()

    def served() -> bool:
        with get_client(sync_client=True) as client:
            return bool(client.read_deployments())

    def completed() -> bool:
        return any(r.state_name == "Completed" for r in runs.flow_runs())

    async def until(check: Any) -> None:
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(check):
            assert time.monotonic() < deadline, "not in time"
            await asyncio.sleep(0.02)

    async def main() -> tuple[list[str], list[str]]:
        dep = await hourly.ato_deployment("each-hour", interval=3600)
        worker = asyncio.ensure_future(aserve(dep, print_starting_message=False))
        try:
            await until(served)
            before = [r.state_name for r in await asyncio.to_thread(runs.flow_runs)]
            clock.advance(3600)
            await until(completed)
            after = [r.state_name for r in await asyncio.to_thread(runs.flow_runs)]
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        return before, after

    with (
        millstream_test_harness(clock=clock),
        temporary_settings({"serve.poll_interval": 0.02}),
    ):
        before, after = asyncio.run(main())
    assert before == [] and after == ["Completed"]
