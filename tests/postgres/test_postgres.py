"""The PostgreSQL backend itself: the dialect layer, migrations shared by processes starting
at once, the CLI's db commands, and clear errors (tests against SQLite and PostgreSQL alike
live beside the code they test, parametrised by the ``backend`` fixture)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pg_fixtures import rows_of

from millstream import flow
from millstream._engine.exceptions import StoreError
from millstream._engine.store import SCHEMA_VERSION, get_store, pg_dialect
from millstream._engine.store.migrations import Q, expand
from millstream.cli import main

psycopg = pytest.importorskip("psycopg", reason="needs the postgres extra")


def test_statements_are_translated_to_postgresql():
    q = pg_dialect.query
    # Placeholders, with "%" doubled and a "?" in a literal or a comment left alone.
    assert q("SELECT '?%' FROM t -- a ? here\nWHERE a = ? AND b LIKE ?") == (
        "SELECT '?%%' FROM t \nWHERE a = %s AND b ILIKE %s"
    )
    assert q("SELECT * FROM t WHERE 0 ORDER BY a LIMIT ? OFFSET ?").endswith(
        "WHERE 0 = 1 ORDER BY a LIMIT nullif(%s, -1) OFFSET %s"
    )
    assert q("SELECT a FROM t WHERE b IS ? AND c IS NOT ? AND d IN ()") == (
        "SELECT a FROM t WHERE b IS NOT DISTINCT FROM %s AND c IS DISTINCT FROM %s AND d IN (NULL)"
    )
    assert q("INSERT OR IGNORE INTO flow (id, name, created) VALUES (?, ?, ?)") == (
        "INSERT INTO flow (id, name, created) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
    )
    assert q(
        "INSERT OR REPLACE INTO cache (key, result, created) VALUES (?, ?, ?) RETURNING key"
    ) == (
        "INSERT INTO cache (key, result, created) VALUES (%s, %s, %s) ON CONFLICT (key) "
        "DO UPDATE SET result = EXCLUDED.result, created = EXCLUDED.created RETURNING key"
    )
    assert pg_dialect.ddl("CREATE TABLE x (a INTEGER, b BLOB NOT NULL DEFAULT x'') STRICT") == (
        "CREATE TABLE x (a BIGINT, b BYTEA NOT NULL DEFAULT '\\x'::bytea,\n    rowid BIGSERIAL\n)"
    )
    assert pg_dialect.ddl("PRAGMA foreign_keys = ON") is None
    # The claim of due runs skips rows another worker holds instead of queueing behind them.
    for count in (1, 3):
        assert "LIMIT 1 FOR UPDATE SKIP LOCKED" in q(expand("claim_due_flow_run", count))


def test_every_named_query_prepares_on_postgresql(pg_url):
    get_store(Path("unused")).ensure_open_sync()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name, sql in Q.items():
            if name in ("vacuum", "__end__") or sql.lstrip().upper().startswith("PRAGMA"):
                continue  # SQLite's own maintenance (PostgreSQL has its own)
            text = pg_dialect.query(sql.replace("IN (/*ids*/)", "IN (?)"))
            parts = text.replace("%%", "%").split("%s")
            numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
            # PREPARE checks names, types and placeholders without running anything.
            try:
                conn.execute(f"PREPARE p AS {numbered}")
            except psycopg.Error as exc:
                raise AssertionError(f"{name}: {exc}") from None
            conn.execute("DEALLOCATE p")


@flow
def hello(n: int) -> int:
    return n + 1


def test_a_flow_run_is_recorded_in_postgresql(pg_url, db_path):
    assert hello(1) == 2
    get_store(db_path).flush_sync()
    assert rows_of(db_path, "SELECT flow_name, state_type FROM flow_run") == [
        ("hello", "COMPLETED")
    ]
    assert not db_path.exists()  # nothing went to the SQLite file


@flow(log_prints=False)
def tagged_hello(n: int) -> int:
    return n + 1


def test_the_dashboards_tag_table_follows_runs_on_postgresql(pg_url, db_path):
    # Migration 5's SQLite triggers become PL/pgSQL trigger functions: a tagged run gets one
    # row per tag, which follows its state and goes with the run.
    from millstream import tags

    with tags("nightly", "etl"):
        assert tagged_hello(1) == 2
    store = get_store(db_path)
    store.flush_sync()
    rows = rows_of(db_path, "SELECT tag, state_type FROM flow_run_tag ORDER BY tag")
    assert rows == [("etl", "COMPLETED"), ("nightly", "COMPLETED")]
    (run_id,) = rows_of(db_path, "SELECT id FROM flow_run")[0]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM flow_run WHERE id = %s", (run_id,))
    assert rows_of(db_path, "SELECT tag FROM flow_run_tag") == []


def test_processes_starting_at_once_migrate_once(pg_url, tmp_path):
    script = tmp_path / "open.py"
    script.write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from millstream._engine.store import get_store
            get_store(Path("unused")).ensure_open_sync()
            print("ok")
            """
        )
    )
    procs = []
    for i in range(4):
        home = tmp_path / f"host-{i}"
        home.mkdir()
        env = {**os.environ, "MILLSTREAM_HOME": str(home)}
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4
    assert outs == ["ok\n"] * 4
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT version FROM millstream_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_db_commands_work_on_postgresql_and_mask_the_password(pg_url, capsys):
    assert main(["db", "path"]) == 0
    shown = capsys.readouterr().out.strip()
    assert "secret-pw" not in shown
    assert shown == pg_url.replace("secret-pw", "***")
    assert main(["db", "migrate"]) == 0
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["db", "migrate"]) == 0  # again: nothing to do
    assert main(["db", "vacuum"]) == 0
    assert "***" in capsys.readouterr().out


def test_db_migrate_creates_the_sqlite_file_too(backend, db_path, capsys):
    assert main(["db", "migrate"]) == 0
    assert f"schema version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert rows_of(db_path, "SELECT count(*) FROM flow_run") == [(0,)]


def test_a_database_of_something_else_is_refused(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with pytest.raises(StoreError, match="not a Millstream database"):
        get_store(Path("unused")).ensure_open_sync()


def test_an_unreachable_server_is_named_without_its_password(monkeypatch, pg_server_session):
    monkeypatch.setenv(
        "MILLSTREAM_DATABASE_URL", "postgresql://me:hunter2@127.0.0.1:1/nowhere?connect_timeout=5"
    )
    with pytest.raises(StoreError) as info:
        asyncio.run(get_store(Path("unused")).ping())
    assert "me:***@127.0.0.1:1" in str(info.value) and "hunter2" not in str(info.value)


def test_a_url_of_another_database_is_refused(monkeypatch):
    monkeypatch.setenv("MILLSTREAM_DATABASE_URL", "mysql://me:pw@localhost/db")
    with pytest.raises(StoreError, match="must be a postgresql:// URL"):
        get_store(Path("unused"))


def test_without_the_extra_the_error_names_it(tmp_path):
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from pathlib import Path\n"
        "from millstream._engine.store import get_store\n"
        "try:\n"
        "    get_store(Path('unused')).ensure_open_sync()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    env = {
        **os.environ,
        "MILLSTREAM_HOME": str(tmp_path),
        "MILLSTREAM_DATABASE_URL": "postgresql://127.0.0.1:1/x",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert "StoreError" in out.stdout and "millstream[postgres]" in out.stdout, out


def test_the_url_can_come_from_the_settings_file(millstream_home, pg_server_session, monkeypatch):
    from millstream._engine.settings import get_current_settings

    monkeypatch.delenv("MILLSTREAM_DATABASE_URL", raising=False)
    url = pg_server_session.fresh_url()
    (millstream_home / "millstream.toml").write_text(f'database_url = "{url}"\n')
    assert get_current_settings().database_url == url
    assert main(["db", "migrate"]) == 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM millstream_schema").fetchone() == (SCHEMA_VERSION,)


def test_concurrency_slots_hold_their_limit_on_postgresql(pg_url):
    # Slot grants are transactions of their own (flow control's transact): on PostgreSQL they
    # follow each other under one advisory lock, so threads on their own connections never
    # hold more slots than the limit allows.
    import threading
    import time

    from millstream.client.orchestration import get_client
    from millstream.client.schemas.actions import GlobalConcurrencyLimitCreate
    from millstream.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="pg", limit=2))
    guard = threading.Lock()
    holding = [0]
    peak = [0]
    done: list[int] = []

    def worker(i: int) -> None:
        with concurrency("pg", occupy=1, timeout_seconds=60, strict=True):
            with guard:
                holding[0] += 1
                peak[0] = max(peak[0], holding[0])
            time.sleep(0.05)  # the work done while holding the slot
            with guard:
                holding[0] -= 1
        done.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(done) == list(range(6))
    assert peak[0] == 2
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("pg").active_slots == 0
