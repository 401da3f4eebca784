"""Plumbing shared by the benchmark scripts: timing, the S1 workload, synthetic flow runs.

The scripts are run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and
they import this module as ``_common``.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

# Roughly what a busy database looks like: mostly completed, some failures.
STATE_MIX = [("COMPLETED", 0.85), ("FAILED", 0.08), ("CRASHED", 0.02), ("CANCELLED", 0.05)]


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating_medians(reps: int, *fns: Callable[[], object]) -> list[float]:
    """Median seconds of each of ``fns`` over ``reps`` rounds of one call each, in turn, so that
    machine noise hits them all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, taken in zip(fns, times, strict=True):
            taken.append(seconds(fn))
    return [statistics.median(taken) for taken in times]


def async_chain() -> tuple[Any, Any, Callable[[int], Coroutine[Any, Any, int]]]:
    """S1, an async flow awaiting ``n`` async no-op tasks one after another: the task, the flow
    and the same work bare (plain coroutines) for the overhead's baseline."""
    from millstream import flow, task

    @task
    async def anoop(x: int) -> int:
        return x

    @flow
    async def chain(n: int) -> int:
        total = 0
        for i in range(n):
            total += await anoop(i)
        return total

    async def bare(n: int) -> int:
        async def noop(x: int) -> int:
            return x

        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    return anoop, chain, bare


def sync_chain() -> tuple[Any, Any]:
    """A sync flow calling ``n`` sync no-op tasks one after another (S3, and the durability
    scenario's work): the task and the flow."""
    from millstream import flow, task

    @task
    def step(x: int) -> int:
        return x

    @flow
    def steps(n: int) -> int:
        return sum(step(i) for i in range(n))

    return step, steps


def flow_names_and_ids(flows: int) -> list[tuple[str, uuid.UUID]]:
    """The synthetic flows ``etl-0`` ... with the ids the store gives flows of those names."""
    names = [f"etl-{i}" for i in range(flows)]
    return [(n, uuid.uuid5(uuid.NAMESPACE_URL, f"millstream:flow:{n}")) for n in names]


def synthetic_flow_runs(
    runs: int,
    flows: int,
    now: dt.datetime,
    deployment_of: Callable[[int], uuid.UUID | None] = lambda i: None,
    running: int = 0,
) -> tuple[list[tuple[Any, ...]], list[tuple[uuid.UUID, dt.datetime]]]:
    """Rows of ``runs`` flow runs of ``flows`` flows, one a second up to ``now``, in the
    ``STATE_MIX`` (seeded: the same every time); the newest ``running`` are still Running, held
    by a live-looking worker. Also (id, start time) of each run, oldest first."""
    from millstream._engine.model.records import FlowRun
    from millstream._engine.model.states import State, StateType
    from millstream._engine.store.rows import encode_history, flow_run_row, history_entry

    rng = random.Random(7)
    identities = flow_names_and_ids(flows)
    types = [StateType(t) for t, _ in STATE_MIX]
    weights = [w for _, w in STATE_MIX]
    rows, made = [], []
    for i in range(runs):
        name, flow_id = identities[rng.randrange(flows)]
        created = now - dt.timedelta(seconds=runs - i)
        start = created + dt.timedelta(milliseconds=5)
        end: dt.datetime | None = start + dt.timedelta(milliseconds=rng.randrange(10, 5000))
        final = rng.choices(types, weights)[0]
        if i >= runs - running:
            final, end = StateType.RUNNING, None
        states = [
            State(type=StateType.PENDING, timestamp=created),
            State(type=StateType.RUNNING, timestamp=start),
        ]
        if end is not None:
            states.append(State(type=final, timestamp=end))
        run = FlowRun(
            id=uuid.uuid4(),
            name=f"{name}-run-{i}",
            flow_id=flow_id,
            flow_name=name,
            parameters={"day": i % 365, "source": "s3://bucket/key"},
            tags=["nightly"] if i % 3 == 0 else [],
            deployment_id=deployment_of(i),
            run_count=1,
            start_time=start,
            end_time=end,
            created=created,
            pid=4242 if end is None else None,
            hostname="worker-1" if end is None else None,
            heartbeat=now if end is None else None,
        )
        history = encode_history([history_entry(s, run.id, "flow_run_id") for s in states])
        rows.append(flow_run_row(run, states[-1], history, None))
        made.append((run.id, start))
    return rows, made


def insert_flow_runs(path: Path, rows: Sequence[tuple[Any, ...]]) -> None:
    """Bulk-write flow run rows (``flow_run_row`` tuples) straight into the SQLite file, with
    the store's own statement (so the columns follow the schema)."""
    from millstream._engine.store.migrations import Q

    with sqlite3.connect(path) as conn:
        conn.executemany(Q["upsert_flow_run"], rows)
