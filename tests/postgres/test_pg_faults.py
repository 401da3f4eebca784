"""Nothing acknowledged is lost on PostgreSQL: the writer survives its connection being cut
(the server's ``pg_terminate_backend``, as a restart or a network blip does), and a NUL byte,
which PostgreSQL text cannot hold, does not cost a batch its rows."""

from __future__ import annotations

from typing import Any

import pytest
from pg_fixtures import rows_of

from millstream import flow, task
from millstream._engine.store import get_store

psycopg = pytest.importorskip("psycopg", reason="needs the postgres extra")


@task
def double(n: int) -> int:
    return n * 2


@flow
def doubling(n: int) -> int:
    return sum(double.map(range(n)).result())


def _read_runs(store: Any) -> list[Any]:
    """The flow runs, through the client (pooled async reads) and the store's point reads."""
    from millstream.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert store.cancelling_among([run.id for run in runs]) == []
    return list(runs)


def _terminate_other_connections(url: str) -> int:
    """Cut every connection to the database but this one, as the server does on a restart."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (killed,) in rows if killed)


def test_the_writer_reconnects_after_its_connection_is_terminated(pg_url, db_path, monkeypatch):
    monkeypatch.setenv("MILLSTREAM_STORE_WRITE_RETRY_SECONDS", "20")
    store = get_store(db_path)
    assert doubling(3) == 6
    store.flush_sync()
    # Reads too have connections open now (the pooled async ones and this thread's own).
    assert len(_read_runs(store)) == 1
    assert _terminate_other_connections(pg_url) >= 1
    # Each read connection that died is replaced, not handed out again.
    assert len(_read_runs(store)) == 1
    for n in range(3):
        assert doubling(n + 2) == (n + 2) * (n + 1)
    store.flush_sync()  # raises if a batch was not written
    states = rows_of(db_path, "SELECT state_type, count(*) FROM flow_run GROUP BY state_type")
    assert states == [("COMPLETED", 4)]
    tasks = rows_of(db_path, "SELECT state_type, count(*) FROM task_run GROUP BY state_type")
    assert tasks == [("COMPLETED", 3 + 2 + 3 + 4)]
    # Cut again: the reconnected writer and the replaced read connections survive a second time.
    assert _terminate_other_connections(pg_url) >= 1
    assert doubling(1) == 0
    store.flush_sync()
    assert len(_read_runs(store)) == 5
    assert rows_of(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == [
        (5,)
    ]


@task(task_run_name="named\x00{n}")
def named(n: int) -> int:
    return n


@flow(log_prints=True)
def noisy(n: int, label: str = "") -> int:
    print(f"before\x00after {n}")
    return n + double(n) + named(0)


def test_a_nul_byte_in_a_printed_line_does_not_lose_the_runs(pg_url, db_path):
    store = get_store(db_path)
    assert noisy(2) == 6
    assert noisy(3, label="a\x00b") == 9
    store.flush_sync()  # raises if a row could not be stored
    assert rows_of(db_path, "SELECT flow_name, state_type FROM flow_run ORDER BY created") == [
        ("noisy", "COMPLETED"),
        ("noisy", "COMPLETED"),
    ]
    assert rows_of(db_path, "SELECT count(*) FROM task_run WHERE state_type = 'COMPLETED'") == [
        (4,)
    ]
    # A parameter is JSON text, where NUL is an escape: kept as it was.
    from millstream.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        labels = sorted(r.parameters.get("label", "") for r in client.read_flow_runs())
        names = {r.name for r in client.read_task_runs()}
    assert labels == ["", "a\x00b"]
    assert "named\ufffd0" in names
    messages = [m for (m,) in rows_of(db_path, "SELECT message FROM log")]
    # PostgreSQL text cannot hold NUL: it is stored as U+FFFD, the rest of the line kept.
    assert "before\ufffdafter 2" in messages and "before\ufffdafter 3" in messages


def test_concurrency_slots_work_after_the_connections_are_cut(pg_url):
    # Slots are granted in transactions of this thread's own connection (not the writer's):
    # one the server cut is replaced before the grant starts.
    from millstream.client.orchestration import get_client
    from millstream.client.schemas.actions import GlobalConcurrencyLimitCreate
    from millstream.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="cut", limit=1))
    with concurrency("cut", occupy=1, timeout_seconds=30, strict=True):
        pass
    assert _terminate_other_connections(pg_url) >= 1
    with concurrency("cut", occupy=1, timeout_seconds=30, strict=True):
        pass
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("cut").active_slots == 0


@pytest.mark.slow
def test_runs_made_while_the_server_restarts_are_recorded_once_it_is_back(
    db_path, monkeypatch, tmp_path
):
    # A server of its own: the session's is shared by the other tests.
    import logging
    import threading

    import pg_server

    if pg_server.binaries() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    failed = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "failed" in record.getMessage():
                failed.set()

    seen = Seen()
    logging.getLogger("millstream.store").addHandler(seen)
    monkeypatch.setenv("MILLSTREAM_STORE_WRITE_RETRY_SECONDS", "60")
    try:
        with pg_server.running() as server:
            monkeypatch.setenv("MILLSTREAM_DATABASE_URL", server.fresh_url())
            store = get_store(db_path)
            assert doubling(2) == 2
            store.flush_sync()
            server.pause()
            # Runs started while the server is down wait for the writer (a run's lease is
            # written before it starts) and go on once it is back.
            results: list[int] = []
            runs = threading.Thread(target=lambda: results.extend([doubling(3), doubling(4)]))
            runs.start()
            assert failed.wait(30)  # the writer met the outage
            server.resume()
            runs.join(60)
            assert results == [6, 12]
            store.flush_sync(timeout=60)
            states = rows_of(db_path, "SELECT state_type, count(*) FROM flow_run GROUP BY 1")
            assert states == [("COMPLETED", 3)]
            assert rows_of(db_path, "SELECT count(*) FROM task_run") == [(2 + 3 + 4,)]
            store.close()
    finally:
        logging.getLogger("millstream.store").removeHandler(seen)
