"""The store's write queue: bounded with backpressure, typed snapshot items, and the
liveness timer (heartbeats, cancellation poll) apart from the writer."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from pg_fixtures import rows_of

from millstream import flow, task
from millstream._engine.model.records import FlowRun, TaskRun
from millstream._engine.model.states import Pending, Running
from millstream._engine.store import get_store


def _rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    # From whichever database the test's backend uses (see tests/postgres/pg_fixtures.py).
    return rows_of(db, sql, *params)


@task
async def tiny(i: int) -> int:
    return i


@flow
async def many_tiny(n: int) -> int:
    return sum([await tiny(i) for i in range(n)])


def test_a_tiny_queue_bound_holds_and_every_run_still_lands(backend, db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_STORE_QUEUE_MAX_ITEMS", "32")
    assert asyncio.run(many_tiny(10_000)) == sum(range(10_000))
    store = get_store(db_path)
    store.flush_sync()
    assert _rows(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'") == [
        (10_000,)
    ]
    assert 0 < store.queue_high_water <= 32


def test_a_producer_thread_waits_for_room_instead_of_growing_the_queue(
    backend, db_path, monkeypatch
):
    monkeypatch.setenv("MILLSTREAM_STORE_QUEUE_MAX_ITEMS", "16")
    store = get_store(db_path)
    store.ensure_open_sync()
    entered, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)

    store.put_call(hold)
    assert entered.wait(10)  # the writer is busy: nothing leaves the queue meanwhile
    flow_id = store.flow_id("held")
    done = threading.Event()

    def produce() -> None:
        for i in range(100):
            run = FlowRun(id=uuid.uuid4(), name=f"r{i}", flow_id=flow_id, flow_name="held")
            store.put_flow_run_state(run, Pending())
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    deadline = time.monotonic() + 10
    while len(store._queue) < 16 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling with a deadline for the queue to fill
    assert len(store._queue) == 16 and not done.is_set()  # the producer waits, bounded
    release.set()
    assert done.wait(10)
    producer.join(10)
    store.flush_sync()
    assert _rows(db_path, "SELECT count(*) FROM flow_run") == [(100,)]
    assert store.queue_high_water <= 16


def test_a_queued_state_write_records_the_run_as_it_was_when_queued(backend, db_path):
    store = get_store(db_path)
    store.ensure_open_sync()
    entered, release = threading.Event(), threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        entered.set()
        release.wait(10)

    store.put_call(hold)
    assert entered.wait(10)
    run = TaskRun(
        id=uuid.uuid4(), name="before", task_key="k", task_name="t", dynamic_key="0", run_count=0
    )
    store.put_task_run_state(run, Pending())
    # The live record moves on before the writer gets to the queued write.
    run.name, run.run_count = "after", 7
    release.set()
    store.flush_sync()
    assert _rows(db_path, "SELECT name, run_count, state_type FROM task_run") == [
        ("before", 0, "PENDING")
    ]


def test_heartbeats_follow_the_heartbeat_setting(backend, db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_SERVE_HEARTBEAT_SECONDS", "0.05")
    store = get_store(db_path)
    run = FlowRun(id=uuid.uuid4(), name="live", flow_id=store.flow_id("f"), flow_name="f")
    store.put_flow_run_state(run, Running())
    store.flush_sync()
    store.track_live(run.id)
    deadline = time.monotonic() + 5
    beat = None
    while beat is None and time.monotonic() < deadline:
        ((beat,),) = _rows(db_path, "SELECT heartbeat FROM flow_run")
        time.sleep(0.02)  # polling with a deadline for the timer's write
    assert beat is not None
    stamp = asyncio.run(store.read_flow_run(run.id)).heartbeat
    assert stamp is not None
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(seconds=5)
    thread_names = {t.name for t in threading.enumerate()}
    assert {"millstream-store", "millstream-liveness"} <= thread_names


def test_store_settings_are_validated(monkeypatch):
    from millstream._engine.settings import get_current_settings

    monkeypatch.setenv("MILLSTREAM_STORE_QUEUE_MAX_ITEMS", "0")
    with pytest.raises(Exception, match=r"queue_max_items|QUEUE_MAX_ITEMS"):
        get_current_settings()
