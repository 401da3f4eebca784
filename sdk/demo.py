"""A small real flow to try Millstream: ``python -m millstream.demo``.

It runs tasks, a task that fails once and is retried, a subflow and a concurrent ``.map``,
then reads the recorded runs back from the SQLite file and prints where they live.
"""

from __future__ import annotations

import asyncio

from millstream import flow, task
from millstream._engine.settings import get_current_settings
from millstream._engine.store import get_store

_attempts: dict[str, int] = {}


@task
def extract(n: int) -> list[int]:
    """Produce some numbers."""
    return list(range(1, n + 1))


@task(retries=2, retry_delay_seconds=0.1)
def flaky_square(x: int) -> int:
    """Square a number, failing the first time it sees it (to show a retry)."""
    key = f"square-{x}"
    _attempts[key] = _attempts.get(key, 0) + 1
    if x == 3 and _attempts[key] == 1:
        raise ConnectionError("transient failure, will be retried")
    return x * x


@task
async def enrich(x: int) -> dict[str, int]:
    """An async task: runs as a coroutine on the flow's event loop."""
    await asyncio.sleep(0.01)
    return {"value": x, "double": 2 * x}


@flow
def summarize(rows: list[dict[str, int]]) -> int:
    """A subflow: recorded as its own flow run with a link to its parent."""
    return sum(row["double"] for row in rows)


@flow(name="demo-etl", log_prints=True)
def etl(n: int = 5) -> int:
    """Extract numbers, square them concurrently, enrich them, summarize them."""
    numbers = extract(n)
    squares = flaky_square.map(numbers).result()
    rows = enrich.map(squares).result()
    total = summarize(rows)
    print(f"squares={squares} total={total}")
    return total


def main() -> None:
    """Run the demo flow and show what was recorded."""
    total = etl(5)
    database = get_current_settings().database_path
    store = get_store(database)

    async def read_back() -> None:
        newest = await store.newest_flow_run_id("demo-etl")
        assert newest is not None  # etl() just ran
        run = await store.read_flow_run(newest)
        states = await store.read_flow_run_states(run.id)
        print(f"flow run {run.name!r} ({run.id}) -> {run.state_name}, result {total}")
        print("  states: " + " -> ".join(s.name or "" for s in states))
        for task_run in await store.read_task_runs_of(run.id):
            print(
                f"  task run {task_run.name:<16} {task_run.state_name or '':<10} "
                f"run_count={task_run.run_count}"
            )

    asyncio.run(read_back())
    print(f"Runs recorded in {database}")


if __name__ == "__main__":
    main()
