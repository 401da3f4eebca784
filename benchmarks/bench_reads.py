"""Client read speed on a big database: ``python benchmarks/bench_reads.py [--runs N]``.

Builds a fresh SQLite file holding 100,000 recorded flow runs (rows inserted directly, in the
format the store writes them), then times listing the 100 newest runs with a state filter
through the client (target <= 20 ms, median of the repetitions), and a few other listings for
context. Prints the query plans too, so a missing index shows up next to the figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _common import flow_names_and_ids, insert_flow_runs, synthetic_flow_runs  # noqa: E402

TARGET_MS = 20.0


def build(path: Path, runs: int, flows: int = 20) -> None:
    """Write ``runs`` finished flow runs of ``flows`` flows, one a second up to now."""
    from millstream._engine.store.sqlite import open_for_writing

    open_for_writing(path).close()  # creates and migrates the file, as the store would
    now = dt.datetime.now(dt.UTC)
    rows, _ = synthetic_flow_runs(runs, flows, now)
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO flow (id, name, created) VALUES (?, ?, ?)",
            [
                (flow_id.bytes, name, int(now.timestamp() * 1_000_000))
                for name, flow_id in flow_names_and_ids(flows)
            ],
        )
    insert_flow_runs(path, rows)


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median milliseconds of ``reps`` calls (after one warm-up call) and the last result."""
    result = fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["MILLSTREAM_HOME"] = home
        os.environ.pop("MILLSTREAM_DATABASE_PATH", None)
        from millstream._engine.settings import get_current_settings
        from millstream._engine.store import reads as queries
        from millstream.client.orchestration import get_client
        from millstream.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from millstream.client.schemas.sorting import FlowRunSort
        from millstream.states import StateType

        path = get_current_settings().database_path
        start = time.perf_counter()
        build(path, args.runs)
        print(f"built {args.runs:,} flow runs in {time.perf_counter() - start:.1f} s")

        failed = FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.FAILED]))
        )
        by_flow = FlowFilter(name=FlowFilterName(any_=["etl-3"]))
        plans = {
            "state filter": queries.flow_runs(flow_run_filter=failed, limit=100),
            "flow filter": queries.flow_runs(flow_filter=by_flow, limit=100),
            "START_TIME_DESC": queries.flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=100),
        }
        with sqlite3.connect(path) as conn:
            for label, (sql, params) in plans.items():
                plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
                print(f"plan ({label}): " + "; ".join(row[-1] for row in plan))

        with get_client(sync_client=True) as client:
            cases: dict[str, Callable[[], Any]] = {
                "headline": lambda: client.read_flow_runs(flow_run_filter=failed, limit=100),
                "100 newest of one flow": lambda: client.read_flow_runs(
                    flow_filter=by_flow, limit=100
                ),
                "100 newest, no filter": lambda: client.read_flow_runs(limit=100),
                "100 newest FAILED, page 50": lambda: client.read_flow_runs(
                    flow_run_filter=failed, limit=100, offset=5_000
                ),
                "100 by START_TIME_DESC": lambda: client.read_flow_runs(
                    sort=FlowRunSort.START_TIME_DESC, limit=100
                ),
                "count FAILED": lambda: client.count_flow_runs(flow_run_filter=failed),
            }
            results = {name: timed(fn, args.reps) for name, fn in cases.items()}

        async def async_listing() -> float:
            async with get_client() as client:

                async def once() -> Any:
                    return await client.read_flow_runs(flow_run_filter=failed, limit=100)

                await once()
                times = []
                for _ in range(args.reps):
                    start = time.perf_counter()
                    await once()
                    times.append((time.perf_counter() - start) * 1e3)
                return statistics.median(times)

        async_ms = asyncio.run(async_listing())

    headline_ms, newest = results.pop("headline")
    assert len(newest) == 100 and all(r.state_type is StateType.FAILED for r in newest)
    assert all(a.created >= b.created for a, b in itertools.pairwise(newest))
    verdict = "ok" if headline_ms <= TARGET_MS else "MISSED"
    print(
        f"100 newest FAILED of {args.runs:,} runs, sync client: {headline_ms:.2f} ms median of "
        f"{args.reps} (target <= {TARGET_MS:g} ms) | {verdict}"
    )
    print(f"  same, async client: {async_ms:.2f} ms")
    for name, (ms, _) in results.items():
        print(f"  {name}: {ms:.2f} ms")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
