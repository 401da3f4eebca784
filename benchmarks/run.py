"""Speed and memory of the engine next to the same work done bare: ``python benchmarks/run.py``.

Each scenario runs the Millstream version and a bare version (plain asyncio coroutines, or
plain function calls / threads for sync) in the same process, alternating, and prints the
median of the repetitions, the per-task overhead and the ratio. Every run is persisted to a
fresh SQLite file in a temporary MILLSTREAM_HOME.

Targets (issue 2): S1 <= 25 us/task overhead, S2 <= 30 us/task and <= 2 KB/task peak memory
growth, S3 <= 150 us/task, S4 <= 1 ms/flow run, S5 import <= 150 ms and first call <= 100 ms.
Targets (issue 3): a cache hit <= 20 us/task (Sc), persisted small results <= 15 us/task over
S1 (Sp), recovery of a 1,000-task flow killed after 900 tasks reaches task 901 <= 0.5 s (Sr).
Targets (issue 4): the 100 newest of 100,000 runs with a state filter <= 20 ms (Sl), logging
10,000 lines from one task <= 10 us per line (Sg).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parent

from _common import (  # noqa: E402
    alternating_medians,
    async_chain,
    insert_flow_runs,
    sync_chain,
)


def _line(name: str, n: int, ms_time: float, bare_time: float, target_us: float) -> dict:
    overhead_us = (ms_time - bare_time) / n * 1e6
    ratio = ms_time / bare_time if bare_time > 0 else float("inf")
    verdict = "ok" if overhead_us <= target_us else f"MISSED by {overhead_us - target_us:.1f} us"
    print(
        f"{name:<4} millstream {ms_time * 1e3:8.2f} ms | bare {bare_time * 1e3:8.2f} ms | "
        f"overhead {overhead_us:7.1f} us/unit (target <= {target_us:g}) | "
        f"ratio {ratio:7.1f}x | {verdict}"
    )
    return {"scenario": name, "overhead_us": overhead_us, "ratio": ratio, "target_us": target_us}


def scenarios(reps: int) -> list[dict]:
    """S1-S4 in this process."""
    from millstream import flow

    anoop, s1, s1_bare = async_chain()

    @flow
    async def s2(n: int) -> int:
        return len(await anoop.map(range(n)))

    async def s2_bare(n: int) -> int:
        async def noop(x: int) -> int:
            return x

        return len(await asyncio.gather(*(asyncio.ensure_future(noop(i)) for i in range(n))))

    _, s3 = sync_chain()

    def s3_bare(n: int) -> int:
        def noop(x: int) -> int:
            return x

        total = 0
        for i in range(n):
            box: list[int] = []
            thread = threading.Thread(target=lambda i=i, box=box: box.append(noop(i)))
            thread.start()
            thread.join()
            total += box[0]
        return total

    @flow
    def trivial() -> int:
        return 1

    def s4(n: int) -> None:
        for _ in range(n):
            trivial()

    def s4_bare(n: int) -> None:
        def plain() -> int:
            return 1

        for _ in range(n):
            plain()

    # Warm up every path once (imports, store thread, first flow records).
    asyncio.run(s1(5))
    asyncio.run(s2(5))
    s3(5)
    s4(2)
    results = []
    for name, n, run, bare, target in [
        ("S1", 1_000, lambda: asyncio.run(s1(1_000)), lambda: asyncio.run(s1_bare(1_000)), 25),
        ("S2", 10_000, lambda: asyncio.run(s2(10_000)), lambda: asyncio.run(s2_bare(10_000)), 30),
        ("S3", 1_000, lambda: s3(1_000), lambda: s3_bare(1_000), 150),
        ("S4", 200, lambda: s4(200), lambda: s4_bare(200), 1_000),
    ]:
        results.append(_line(name, n, *alternating_medians(reps, run, bare), target))
    return results


def results_scenarios(reps: int) -> list[dict]:
    """Issue 3: cache hits, persisted results over S1."""
    from millstream import flow, task
    from millstream.cache_policies import INPUTS, NO_CACHE

    @task(cache_policy=INPUTS)
    async def cached(x: int) -> int:
        return x

    @flow
    async def s_cache(n: int) -> int:
        total = 0
        for _ in range(n):
            total += await cached(1)
        return total

    @task
    async def plain(x: int) -> int:
        return x

    @task(persist_result=True, cache_policy=NO_CACHE)
    async def persisted(x: int) -> int:
        return x

    @flow
    async def s1_plain(n: int) -> int:
        return sum([await plain(i) for i in range(n)])

    @flow
    async def s1_persisted(n: int) -> int:
        return sum([await persisted(i) for i in range(n)])

    async def bare(n: int) -> int:
        async def noop(x: int) -> int:
            return x

        return sum([await noop(1) for _ in range(n)])

    asyncio.run(s_cache(2))
    asyncio.run(s1_persisted(2))
    cache_t, bare_t, plain_t, persist_t = alternating_medians(
        reps,
        lambda: asyncio.run(s_cache(1_000)),
        lambda: asyncio.run(bare(1_000)),
        lambda: asyncio.run(s1_plain(1_000)),
        lambda: asyncio.run(s1_persisted(1_000)),
    )
    results = [_line("Sc", 1_000, cache_t, bare_t, 20)]
    extra = (persist_t - plain_t) / 1_000 * 1e6
    print(
        f"Sp   persisted small results add {extra:6.1f} us/task over S1 (target <= 15) | "
        f"{'ok' if extra <= 15 else f'MISSED by {extra - 15:.1f} us'}"
    )
    results.append({"scenario": "Sp", "extra_us": extra})
    return results


def durability(reps: int, n: int = 1_000) -> dict:
    """Issue 11: the cost of MILLSTREAM_DURABILITY=every_task (one commit per task) over the
    default batched commits, per task of a sync flow of ``n`` tasks."""
    _, steps = sync_chain()
    home = Path(os.environ["MILLSTREAM_HOME"])

    def every_task() -> None:
        os.environ["MILLSTREAM_DATABASE_PATH"] = str(home / "every-task.db")
        os.environ["MILLSTREAM_DURABILITY"] = "every_task"
        try:
            steps(n)
        finally:
            os.environ.pop("MILLSTREAM_DATABASE_PATH")
            os.environ.pop("MILLSTREAM_DURABILITY")

    steps(2)
    every_task()
    batched, every = alternating_medians(reps, lambda: steps(n), every_task)
    extra = (every - batched) / n * 1e6
    print(
        f"Sd   durability every_task {every * 1e3:8.2f} ms | batched {batched * 1e3:8.2f} ms | "
        f"adds {extra:7.1f} us/task (one commit per task; informational)"
    )
    return {
        "scenario": "Sd",
        "every_task_ms": every * 1e3,
        "batched_ms": batched * 1e3,
        "extra_us_per_task": extra,
    }


CRASHING_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from millstream import flow, task

    @task
    def step(i: int) -> int:
        if i == 900 and os.environ.get("CRASH") == "1":
            # Crash once tasks 0-899 are on disk (the writer may lag a few ms behind).
            from millstream._engine.settings import get_current_settings
            from millstream._engine.store import get_store
            get_store(get_current_settings().database_path).flush_sync()
            os.kill(os.getpid(), signal.SIGKILL)
        if i == 900:
            with open(os.environ["STAMP"], "w") as f:
                import time
                f.write(repr(time.time()))
        return i

    @flow
    def thousand() -> int:
        return sum(step(i) for i in range(1000))

    if __name__ == "__main__":
        thousand()
    """
)


def recovery(reps: int) -> dict:
    """Issue 3: time from recover() to task 901 of a 1,000-task flow killed after 900 tasks."""
    times = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as home:
            script = Path(home) / "crashing.py"
            script.write_text(CRASHING_CHILD)
            stamp = Path(home) / "stamp"
            env = {**os.environ, "MILLSTREAM_HOME": home, "STAMP": str(stamp)}
            env["PYTHONPATH"] = str(ROOT)
            subprocess.run([sys.executable, str(script)], env={**env, "CRASH": "1"}, check=False)
            child = (
                "import time, sys; t = time.time(); from millstream.recovery import recover; "
                "r = recover(); print(t)"
            )
            out = subprocess.run(
                [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=True
            )
            times.append(float(stamp.read_text()) - float(out.stdout.strip()))
    took = statistics.median(times)
    print(
        f"Sr   recovery reached task 901 after {took * 1e3:6.1f} ms (target <= 500, includes "
        f"interpreter start and imports) | {'ok' if took <= 0.5 else 'MISSED'}"
    )
    return {"scenario": "Sr", "seconds": took}


def observability(reps: int) -> list[dict]:
    """Issue 4: list the 100 newest of 100,000 runs with a state filter; log line cost."""
    import logging

    from millstream import flow, get_client, get_run_logger, task
    from millstream._engine.model.records import FlowRun
    from millstream._engine.model.states import Completed, Failed
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store
    from millstream._engine.store.rows import encode_history, history_entry
    from millstream._engine.store.rows import flow_run_row as _flow_run_row
    from millstream.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from millstream.states import StateType

    @flow
    def seed() -> None:
        pass

    seed()  # creates the database and the flow
    store = get_store(get_current_settings().database_path)
    flow_id = store.flow_id("seed")
    rows = []
    for i in range(100_000):
        state = Failed() if i % 10 == 0 else Completed()
        run = FlowRun(
            id=uuid.uuid4(),
            name=f"bulk-{i}",
            flow_id=flow_id,
            flow_name="seed",
            created=state.timestamp,
            start_time=state.timestamp,
            end_time=state.timestamp,
        )
        history = encode_history([history_entry(state, run.id, "flow_run_id")])
        rows.append(_flow_run_row(run, state, history, None))
    insert_flow_runs(store.path, rows)
    failed = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
    )
    times = []
    with get_client(sync_client=True) as client:
        for _ in range(max(reps, 5)):
            start = time.perf_counter()
            newest = client.read_flow_runs(flow_run_filter=failed, limit=100)
            times.append(time.perf_counter() - start)
    assert len(newest) == 100
    listing = statistics.median(times)
    print(
        f"Sl   100 newest failed of 100,000 runs: {listing * 1e3:6.2f} ms (target <= 20) | "
        f"{'ok' if listing <= 0.020 else 'MISSED'}"
    )
    logging.getLogger("millstream").handlers[0].setLevel(logging.CRITICAL)  # keep stderr quiet

    @task
    def chatty(n: int) -> None:
        logger = get_run_logger()
        for i in range(n):
            logger.info("line %d", i)

    @task
    def quiet(n: int) -> None:
        for i in range(n):
            str(i)

    @flow
    def talk(n: int) -> None:
        chatty(n)

    @flow
    def silent(n: int) -> None:
        quiet(n)

    talk(10)
    loud, quiet_t = alternating_medians(reps, lambda: talk(10_000), lambda: silent(10_000))
    per_line = (loud - quiet_t) / 10_000 * 1e6
    print(
        f"Sg   logging adds {per_line:6.1f} us/line (target <= 10; console output silenced) | "
        f"{'ok' if per_line <= 10 else f'MISSED by {per_line - 10:.1f} us'}"
    )
    return [
        {"scenario": "Sl", "ms": listing * 1e3},
        {"scenario": "Sg", "us_per_line": per_line},
    ]


MEMORY_CHILD = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from millstream import flow, task

    @task
    async def anoop(x):
        return x

    @flow
    async def s2(n):
        return len(await anoop.map(range(n)))

    def rss_kb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() // 1024

    asyncio.run(s2(100))
    base = rss_kb()
    n = int(sys.argv[1])
    asyncio.run(s2(n))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_kb": base, "peak_kb": peak, "n": n}))
    """
)


def memory(n: int = 10_000) -> dict:
    """S2's peak memory growth per task run, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD, str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    data = json.loads(out.stdout)
    per_task = (data["peak_kb"] - data["base_kb"]) * 1024 / n
    verdict = "ok" if per_task <= 2048 else f"MISSED by {per_task - 2048:.0f} B"
    print(
        f"S2m peak RSS {data['peak_kb'] / 1024:.1f} MB, growth {per_task:.0f} B/task run "
        f"(target <= 2048 B) | {verdict}"
    )
    return {"scenario": "S2-memory", "bytes_per_task": per_task}


STARTUP_CHILD = textwrap.dedent(
    """
    import json, time
    t0 = time.perf_counter()
    from millstream import flow, task
    t1 = time.perf_counter()

    @task
    def one():
        return 1

    @flow
    def first():
        return one()

    first()
    t2 = time.perf_counter()
    print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_call_ms": (t2 - t1) * 1e3}))
    """
)


def startup(reps: int) -> dict:
    """S5: import time and the first flow call, each in a fresh process."""
    imports, firsts = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as home:
            out = subprocess.run(
                [sys.executable, "-c", STARTUP_CHILD],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "MILLSTREAM_HOME": home, "PYTHONPATH": str(ROOT)},
            )
        data = json.loads(out.stdout)
        imports.append(data["import_ms"])
        firsts.append(data["first_call_ms"])
    imp, first = statistics.median(imports), statistics.median(firsts)
    print(
        f"S5   import millstream {imp:6.1f} ms (target <= 150) | first flow call {first:6.1f} ms "
        f"(target <= 100) | {'ok' if imp <= 150 and first <= 100 else 'MISSED'}"
    )
    return {"scenario": "S5", "import_ms": imp, "first_call_ms": first}


def database_bytes(n: int = 10_000) -> dict:
    """Sb: database bytes (file + WAL after a checkpoint) per task run, for a flow of ``n``
    trivial async tasks in a fresh database (their log lines included)."""
    import logging
    import sqlite3

    from millstream import flow, task
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    @task
    async def tiny(x: int) -> int:
        return x

    @flow
    async def many(n: int) -> int:
        return sum([await tiny(i) for i in range(n)])

    with tempfile.TemporaryDirectory() as home:
        os.environ["MILLSTREAM_HOME"] = home
        try:
            asyncio.run(many(1))  # the console handler exists once a run has logged
            console = logging.getLogger("millstream").handlers[0]
            level = console.level
            console.setLevel(logging.CRITICAL)  # keep stderr quiet; lines are still stored
            try:
                asyncio.run(many(n))
            finally:
                console.setLevel(level)
            path = get_current_settings().database_path
            get_store(path).flush_sync()
            with sqlite3.connect(path) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            wal = Path(f"{path}-wal")
            total = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        finally:
            from millstream._engine.store import close_all

            close_all()
    per_run = total / (n + 1)
    print(
        f"Sb   database {total / 1e6:6.2f} MB for {n + 1} task runs: {per_run:6.0f} B/task run "
        f"(target <= 500) | {'ok' if per_run <= 500 else 'MISSED'}"
    )
    return {"scenario": "Sb", "bytes_per_task_run": per_run}


def main() -> None:
    """Run every scenario and print the figures (``--json`` adds a machine-readable line)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per scenario (>= 5)")
    parser.add_argument("--json", action="store_true", help="also print results as JSON")
    parser.add_argument(
        "--core", action="store_true", help="only S1-S4 and database bytes per task run (Sb)"
    )
    parser.add_argument(
        "--only",
        choices=["durability", "contention"],
        help="only this scenario: durability (Sd) or contention (Sq: 5 processes x 4 threads)",
    )
    args = parser.parse_args()
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    with tempfile.TemporaryDirectory() as home:
        os.environ["MILLSTREAM_HOME"] = home
        os.environ.pop("MILLSTREAM_DATABASE_PATH", None)
        print(f"Millstream benchmarks, median of {args.reps} runs, python {sys.version.split()[0]}")
        if args.only is not None:
            from contention import main as contention_figures

            only = durability(args.reps) if args.only == "durability" else contention_figures()
            if args.json:
                print(json.dumps([only]))
            return
        results = scenarios(args.reps)
        if args.core:
            results.append(database_bytes())
            if args.json:
                print(json.dumps(results))
            return
        results += results_scenarios(args.reps)
        results.append(recovery(args.reps))
        results.append(durability(args.reps))
        results += observability(args.reps)
        results.append(memory())
        from serve_bench import main as serve_figures

        results += serve_figures()
        from contention import main as contention_figures

        results.append(contention_figures())
        results.append(startup(args.reps))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
