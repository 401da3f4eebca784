"""Write faults with real mechanisms: another process holding BEGIN IMMEDIATE past the busy
timeout, and a file-size limit (RLIMIT_FSIZE) that makes SQLite's writes fail. A transient
failure is retried; one that lasts fails the flush point naming the database and the cause;
nothing the ledger says finished is missing from the database once writing can resume."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fault_tools import Processes, ledger_lines, query, wait_until

from millstream._engine.store import get_store

pytestmark = pytest.mark.slow

LOCKER = """
import sqlite3, sys, time
from pathlib import Path
db, held, release = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
conn = sqlite3.connect(db, isolation_level=None, timeout=30)
conn.execute("BEGIN IMMEDIATE")
held.write_text("held")
deadline = time.monotonic() + 60
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
conn.execute("ROLLBACK")
"""

# The task both scripts run: it notes each run in the ledger (the oracle) and returns ``i``.
LEDGER_STEP = """
@task
def step(label: str, i: int) -> int:
    with LEDGER.open("a") as f:
        f.write(f"{label} {i}\\n")
    return i
"""

STEPS = """
import os, sys, time
from pathlib import Path
from millstream import flow, task
from millstream.exceptions import StoreError

LEDGER = Path(os.environ["LEDGER"])
"""
STEPS += LEDGER_STEP
STEPS += """
@flow
def steps(label: str, n: int) -> int:
    return sum(step(label, i) for i in range(n))

def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)

if __name__ == "__main__":
    try:
        print("result", steps("first", 5), flush=True)
    except StoreError as exc:
        print("raised:", exc, flush=True)
        wait_for(Path(sys.argv[1]))
        print("result", steps("second", 3), flush=True)
"""


def _make_database(db_path: Path) -> None:
    get_store(db_path).ensure_open_sync()


def _completed_on_disk(db: Path) -> set[tuple[str, str]]:
    rows = query(
        db,
        "SELECT json_extract(t.parameters, '$.label'), t.dynamic_key FROM task_run t"
        " WHERE t.state_type = 'COMPLETED'",
    )
    return {(label, key) for label, key in rows}


def _ledger_set(ledger: Path) -> set[tuple[str, str]]:
    return {(a, str(int(b))) for a, b in (line.split() for line in ledger_lines(ledger))}


def _assert_on_disk_as_in_ledger(db_path: Path, ledger: Path, tasks: int) -> None:
    """The ledger lists ``tasks`` finished tasks, and those are what the database holds."""
    assert len(_ledger_set(ledger)) == tasks
    assert _completed_on_disk(db_path) == _ledger_set(ledger)


def _hold_the_lock(
    procs: Processes, db_path: Path, tmp_path: Path
) -> tuple[subprocess.Popen[str], Path]:
    """A process holding BEGIN IMMEDIATE on the database until the returned file exists."""
    _make_database(db_path)
    held, release = tmp_path / "held", tmp_path / "release"
    locker = procs.start(procs.script("locker.py", LOCKER), str(db_path), str(held), str(release))
    wait_until(held.exists)
    return locker, release


def _let_go(
    procs: Processes, locker: subprocess.Popen[str], release: Path, main: subprocess.Popen[str]
) -> str:
    """Release the lock; both processes end well; the output of ``main``."""
    release.write_text("go")
    assert locker.wait(30) == 0
    assert main.wait(60) == 0, procs.output(main)
    return procs.output(main)


def test_a_lock_held_past_the_busy_timeout_is_retried_and_nothing_is_lost(
    procs: Processes, db_path: Path, ledger: Path, tmp_path: Path
) -> None:
    locker, release = _hold_the_lock(procs, db_path, tmp_path)
    main = procs.start(
        procs.script("steps.py", STEPS),
        str(tmp_path / "unused"),
        MILLSTREAM_STORE_BUSY_TIMEOUT_SECONDS="0.2",
        MILLSTREAM_STORE_WRITE_RETRY_SECONDS="60",
    )
    # The writer met the lock (and said so) before it is released: a real retry, not luck.
    wait_until(lambda: "retrying" in procs.output(main))
    assert "result 10" in _let_go(procs, locker, release, main)
    _assert_on_disk_as_in_ledger(db_path, ledger, 5)
    assert query(db_path, "SELECT state_type FROM flow_run") == [("COMPLETED",)]


def test_a_lock_that_outlasts_the_retries_fails_the_flow_call_then_writing_resumes(
    procs: Processes, db_path: Path, ledger: Path, tmp_path: Path
) -> None:
    locker, release = _hold_the_lock(procs, db_path, tmp_path)
    main = procs.start(
        procs.script("steps.py", STEPS),
        str(release),
        MILLSTREAM_STORE_BUSY_TIMEOUT_SECONDS="0.1",
        MILLSTREAM_STORE_WRITE_RETRY_SECONDS="0.3",
    )
    wait_until(lambda: "raised:" in procs.output(main))
    out = procs.output(main)
    assert str(db_path) in out and "locked" in out  # names the database and the cause
    assert "result 3" in _let_go(procs, locker, release, main)
    # What the failed call's tasks finished was kept and written once the lock went.
    _assert_on_disk_as_in_ledger(db_path, ledger, 8)
    assert sorted(r[0] for r in query(db_path, "SELECT state_type FROM flow_run")) == [
        "COMPLETED",
        "COMPLETED",
    ]


FSIZE = """
import logging, os, resource, signal, sys, threading
from pathlib import Path
from millstream import flow, task
from millstream.exceptions import StoreError
from millstream._engine.settings import get_current_settings
from millstream._engine.store import get_store

LEDGER = Path(os.environ["LEDGER"])
mode = sys.argv[1]
"""
FSIZE += LEDGER_STEP
FSIZE += """
@flow(log_prints=True)
def steps(label: str, n: int) -> int:
    for i in range(200):
        print("filler line", i, "y" * 200)
    return sum(step(label, i) for i in range(n))

class Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()
    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            self.event.set()

seen = Seen()
logging.getLogger("millstream.store").addHandler(seen)

db = get_current_settings().database_path
get_store(db).ensure_open_sync()
# A file-size limit just above what the files hold now: SQLite's next growth fails (EFBIG).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
biggest = max(p.stat().st_size for p in db.parent.glob(db.name + "*"))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (biggest + 1024, hard))

def lift() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))

if mode == "once":
    # The limit is lifted once the writer has met it: a one-off I/O error, retried.
    def lift_when_seen() -> None:
        seen.event.wait(60)
        lift()
    threading.Thread(target=lift_when_seen, daemon=True).start()
    print("result", steps("first", 5), flush=True)
else:
    try:
        steps("first", 5)
        print("no error", flush=True)
    except StoreError as exc:
        print("raised:", exc, flush=True)
    lift()
    print("result", steps("second", 3), flush=True)
"""


def _run_fsize(procs: Processes, mode: str, retry_seconds: str) -> str:
    """Run the file-size script in ``mode`` to a good end; its output."""
    code, out = procs.run(
        procs.script("fsize.py", FSIZE),
        mode,
        MILLSTREAM_STORE_WRITE_RETRY_SECONDS=retry_seconds,
        timeout=90,
    )
    assert code == 0, out
    return out


def test_a_one_off_disk_error_is_retried_and_the_flow_returns_with_everything_on_disk(
    procs: Processes, db_path: Path, ledger: Path
) -> None:
    out = _run_fsize(procs, "once", retry_seconds="60")
    assert "result 10" in out and "retrying" in out
    _assert_on_disk_as_in_ledger(db_path, ledger, 5)


def test_a_file_size_limit_fails_the_call_naming_the_cause_and_writing_resumes(
    procs: Processes, db_path: Path, ledger: Path
) -> None:
    out = _run_fsize(procs, "lasting", retry_seconds="0.3")
    (line,) = [x for x in out.splitlines() if x.startswith("raised:")]
    assert str(db_path) in line
    assert "disk I/O error" in line or "database or disk is full" in line
    assert "cannot rollback" not in line
    assert "result 3" in out
    _assert_on_disk_as_in_ledger(db_path, ledger, 8)
