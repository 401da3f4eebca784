"""``Task.delay`` and task workers: queued durably, run once, results from any process."""

from __future__ import annotations

import importlib.util
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from millstream import task
from millstream.exceptions import NotSupportedError
from millstream.task_worker import TaskWorker

_TASKS = """
import os
from millstream import task

LEDGER = {ledger!r}

@task(retries=2)
def record(i: int) -> int:
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{{i}} {{os.getpid()}}\\n".encode())
    finally:
        os.close(fd)
    return i * 2
"""


@pytest.mark.slow
def test_a_thousand_delayed_runs_are_each_executed_once_by_two_workers(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    ledger = tmp_path / "ledger.txt"
    module = tmp_path / "background.py"
    module.write_text(_TASKS.format(ledger=str(ledger)))
    spec = importlib.util.spec_from_file_location("background_tasks", module)
    assert spec is not None and spec.loader is not None
    background = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(background)
    futures = [background.record.delay(i) for i in range(1000)]
    code = "import sys; from millstream.cli import main; sys.exit(main(sys.argv[1:]))"
    workers = [
        spawn(
            code,
            "task-worker",
            f"{module}:record",
            "--limit",
            "4",
            MILLSTREAM_LIMITS_POLL_SECONDS="0.05",
        )
        for _ in range(2)
    ]
    try:
        results = [f.result(timeout=60) for f in futures]
    except TimeoutError:
        for worker in workers:
            worker.kill()
        raise AssertionError([w.communicate()[1][-3000:] for w in workers]) from None
    assert results == [i * 2 for i in range(1000)]
    for worker in workers:
        worker.kill()
    lines = ledger.read_text().split("\n")[:-1]
    counts = Counter(line.split()[0] for line in lines)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    # Both workers took part.
    assert len({line.split()[1] for line in lines}) == 2


def test_retries_priority_idempotency_and_failures_in_process() -> None:
    order: list[str] = []
    tries = Counter[str]()

    @task(retries=1)
    def flaky(name: str) -> str:
        tries[name] += 1
        if tries[name] == 1:
            raise RuntimeError("first try fails")
        order.append(name)
        return name.upper()

    @task
    def broken() -> None:
        raise ValueError("always")

    low = flaky.apply_async(("low",), priority=0)
    high = flaky.apply_async(("high",), priority=5)
    again = flaky.apply_async(("other",), idempotency_key="once")
    same = flaky.apply_async(("ignored",), idempotency_key="once")
    assert same == again
    bad = broken.delay()
    # As Prefect's delay(): the public PrefectDistributedFuture, equal by task run id.
    from millstream.futures import PrefectDistributedFuture

    assert isinstance(bad, PrefectDistributedFuture) and bad != low
    assert not low.done() and low.state.type.value == "SCHEDULED"
    worker = TaskWorker(flaky, broken, limit=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert high.result(timeout=30) == "HIGH"
        assert low.result(timeout=30) == "LOW"
        assert same.result(timeout=30) == "OTHER"
        with pytest.raises(ValueError, match="always"):
            bad.result(timeout=30)
        assert isinstance(bad.result(raise_on_failure=False), ValueError)
    finally:
        worker.stop()
        thread.join(30)
    # One worker thread: the higher priority ran first; each run retried once, none twice.
    assert order.index("high") < order.index("low")
    assert tries == {"low": 2, "high": 2, "other": 2}
    assert "ignored" not in tries


def test_waiting_for_an_unfinished_run_times_out_and_bad_options_are_refused() -> None:
    @task
    def never(x: int) -> int:
        return x

    future = never.delay(1)
    with pytest.raises(TimeoutError):
        future.result(timeout=0.05)
    with pytest.raises(NotSupportedError, match="wait_for"):
        never.apply_async((1,), wait_for=[future])
    with pytest.raises(TypeError):
        never.apply_async((1,), priority="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        TaskWorker(never, limit=0)
