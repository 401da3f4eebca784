"""Task runners beside the bare engines they run on: ``python benchmarks/runners.py``.

* Dask: 1,000 ``.map``ped CPU-bound tasks (about 10 ms each) on a two-worker LocalCluster
  (processes, one thread each), through ``DaskTaskRunner(address=...)`` and through bare
  ``client.map`` + ``client.gather`` on the same cluster, alternating. Target: <= 1.3x.
* Process pool: tasks that do nothing (so the time per task is all overhead) through
  ``ProcessPoolTaskRunner(max_workers=2)`` and through a bare
  ``concurrent.futures.ProcessPoolExecutor(max_workers=2)`` (``spawn``, as the runner), each
  including its pool's start. Target: <= 1.5x. Then the same with ~10 ms CPU-bound tasks.

Medians of ``--reps`` (default 3) repetitions. Every flow run is recorded in a fresh SQLite
file in a temporary MILLSTREAM_HOME.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # workers inherit the path: they import runner_tasks by name

from _common import alternating_medians  # noqa: E402


def dask_figures(count: int, reps: int) -> tuple[float, float]:
    """(Millstream seconds, bare seconds) for ``count`` mapped 10 ms tasks on Dask."""
    import distributed
    import runner_tasks

    from millstream import flow
    from millstream.task_runners import DaskTaskRunner

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0"
    )
    try:
        client = distributed.Client(cluster, set_as_default=False)

        def bare() -> None:
            futures = client.map(runner_tasks.cpu, range(count), pure=False)
            assert client.gather(futures) == list(range(count))

        @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        def mapped() -> list[int]:
            return runner_tasks.cpu_task.map(range(count)).result()

        def ours() -> None:
            assert mapped() == list(range(count))

        bare()  # warm the workers (imports) for both
        ours()
        mine, theirs = alternating_medians(reps, ours, bare)
        client.close()
        return mine, theirs
    finally:
        cluster.close()


def process_figures(count: int, reps: int, cpu: bool = False) -> tuple[float, float]:
    """(Millstream seconds, bare seconds) for ``count`` no-op (or ~10 ms) tasks on two worker
    processes."""
    import runner_tasks

    from millstream import flow
    from millstream.task_runners import ProcessPoolTaskRunner

    fn, task = (
        (runner_tasks.cpu, runner_tasks.cpu_task)
        if cpu
        else (runner_tasks.noop, runner_tasks.noop_task)
    )

    def bare() -> None:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=2, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [pool.submit(fn, i) for i in range(count)]
            assert [f.result() for f in futures] == list(range(count))

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def mapped() -> list[int]:
        return task.map(range(count)).result()

    def ours() -> None:
        assert mapped() == list(range(count))

    mine, theirs = alternating_medians(reps, ours, bare)
    return mine, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dask-tasks", type=int, default=1000)
    parser.add_argument("--process-tasks", type=int, default=1000)
    parser.add_argument("--process-cpu-tasks", type=int, default=200)
    parser.add_argument("--only", choices=["dask", "process"])
    args = parser.parse_args()
    os.environ["MILLSTREAM_HOME"] = tempfile.mkdtemp(prefix="millstream-bench-")
    os.environ.setdefault("MILLSTREAM_LOGGING_LEVEL", "WARNING")
    if args.only != "process":
        n = args.dask_tasks
        mine, bare = dask_figures(n, args.reps)
        print(
            f"Dask, {n} mapped ~10 ms tasks, 2-worker LocalCluster: millstream {mine:.2f} s "
            f"({mine / n * 1e3:.2f} ms/task), bare client.map {bare:.2f} s "
            f"({bare / n * 1e3:.2f} ms/task); overhead {(mine - bare) / n * 1e3:+.2f} ms/task; "
            f"ratio {mine / bare:.2f}x (target <= 1.3x)"
        )
    if args.only != "dask":
        n = args.process_tasks
        mine, bare = process_figures(n, args.reps)
        print(
            f"Process pool, {n} no-op tasks, 2 workers (pool start included): millstream "
            f"{mine:.2f} s ({mine / n * 1e6:.0f} us/task), bare ProcessPoolExecutor {bare:.2f} s "
            f"({bare / n * 1e6:.0f} us/task); ratio {mine / bare:.2f}x (target <= 1.5x)"
        )
        n = args.process_cpu_tasks
        mine, bare = process_figures(n, args.reps, cpu=True)
        print(
            f"Process pool, {n} ~10 ms tasks, 2 workers (pool start included): millstream "
            f"{mine:.2f} s, bare ProcessPoolExecutor {bare:.2f} s; overhead "
            f"{(mine - bare) / n * 1e3:+.2f} ms/task; ratio {mine / bare:.2f}x"
        )


if __name__ == "__main__":
    main()
