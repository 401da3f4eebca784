"""Migration 5 on a database made before it: tagged runs are found by the tag filter."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from pathlib import Path

from millstream._engine.model.records import FlowRun
from millstream._engine.model.states import State, StateType
from millstream._engine.store import dashboard as reads
from millstream._engine.store import get_store
from millstream._engine.store.migrations import MIGRATIONS, Q, _register_converters, statements
from millstream._engine.store.rows import encode_history, flow_run_row, history_entry


def _database_before_migration_5(path: Path) -> list[uuid.UUID]:
    conn = sqlite3.connect(path, isolation_level=None)
    _register_converters(conn)
    for number, ddl in MIGRATIONS:
        if number < 5:
            for statement in statements(ddl):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
    now = dt.datetime.now(dt.UTC)
    made = []
    for i, run_tags in enumerate([["nightly", "eu"], [], ["nightly"]]):
        state = State(type=StateType.COMPLETED if i else StateType.FAILED, timestamp=now)
        run = FlowRun(
            id=uuid.uuid4(),
            name=f"old-{i}",
            flow_id=uuid.uuid4(),
            flow_name="old",
            tags=run_tags,
            created=now + dt.timedelta(seconds=i),
        )
        history = encode_history([history_entry(state, run.id, "flow_run_id")])
        conn.execute(Q["upsert_flow_run"], flow_run_row(run, state, history, None))
        made.append(run.id)
    conn.close()
    return made


def test_tags_of_existing_runs_are_indexed(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    first, _, third = _database_before_migration_5(db_path)
    store = get_store(db_path)

    async def read() -> tuple[list[uuid.UUID], dict[str, int], list[uuid.UUID]]:
        runs, _ = await reads.read_runs_page(store, reads.RunQuery(tag="nightly"), None, 10)
        counts = await reads.read_state_counts(store, reads.RunQuery(tag="nightly"))
        eu, _ = await reads.read_runs_page(store, reads.RunQuery(tag="eu"), None, 10)
        return [r.id for r in runs], counts, [r.id for r in eu]

    nightly, counts, eu = asyncio.run(read())
    assert nightly == [third, first]  # newest first
    assert counts == {"COMPLETED": 1, "FAILED": 1}
    assert eu == [first]
    asyncio.run(store.delete_flow_run(first))
    nightly, counts, eu = asyncio.run(read())
    assert (nightly, counts, eu) == ([third], {"COMPLETED": 1}, [])
