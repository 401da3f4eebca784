"""Flow-call latency under contention: 5 processes x 4 threads share one SQLite file.

Each thread calls a small sync flow (3 tasks) in a loop; every call's latency (call to return,
its final state durable) is recorded. Prints runs/s, p50 and p99, and checks with the file
that every returned run is Completed on disk (runs lost) and none is recorded twice.
``python benchmarks/contention.py`` or ``python benchmarks/run.py --only contention``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

PROCESSES, THREADS, CALLS = 5, 4, 50

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    from millstream import flow, task

    @task
    def add(x: int) -> int:
        return x + 1

    @flow
    def small(i: int) -> int:
        return add(add(add(i)))

    def worker(out: list) -> None:
        for i in range(int(sys.argv[2])):
            start = time.perf_counter()
            state = small(i, return_state=True)
            out.append((time.perf_counter() - start, str(state.state_details.flow_run_id)))

    small(0)
    results: list = []
    threads = [threading.Thread(target=worker, args=(results,)) for _ in range(int(sys.argv[1]))]
    while time.time() < float(sys.argv[3]):
        time.sleep(0.001)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(results))
    """
)


def main() -> dict:
    """Run the scenario in a fresh MILLSTREAM_HOME and print its figures."""
    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "child.py"
        script.write_text(CHILD)
        env = {**os.environ, "MILLSTREAM_HOME": home}
        env.pop("MILLSTREAM_DATABASE_PATH", None)
        start_at = time.time() + 3.0  # every process imported and warmed up by then
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(THREADS), str(CALLS), str(start_at)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        outputs = [p.communicate(timeout=600)[0] for p in procs]
        wall = time.time() - start_at
        calls = [tuple(c) for out in outputs for c in json.loads(out.strip().splitlines()[-1])]
        latencies = sorted(c[0] for c in calls)
        ids = [c[1] for c in calls]
        with sqlite3.connect(Path(home) / "millstream.db") as conn:
            completed = {
                str(uuid.UUID(bytes=r[0]))
                for r in conn.execute("SELECT id FROM flow_run WHERE state_type = 'COMPLETED'")
            }
    lost = sum(1 for i in ids if i not in completed)
    duplicated = len(ids) - len(set(ids))
    p50 = latencies[len(latencies) // 2] * 1e3
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1e3
    rate = len(calls) / wall
    print(
        f"Sq   {PROCESSES} processes x {THREADS} threads: {len(calls)} flow calls, "
        f"{rate:7.1f} runs/s | p50 {p50:6.1f} ms | p99 {p99:6.1f} ms | lost {lost} | "
        f"duplicated {duplicated}"
    )
    return {
        "scenario": "Sq",
        "calls": len(calls),
        "runs_per_s": rate,
        "p50_ms": p50,
        "p99_ms": p99,
        "lost": lost,
        "duplicated": duplicated,
    }


if __name__ == "__main__":
    main()
