"""Leases, fencing and takeover with real worker processes: SIGSTOP past the lease, SIGKILL,
and heartbeats at the configured interval. The ledger says which process ran a body; the
database must show one Completed per run, by the process that holds the lease."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fault_tools import Processes, ledger_lines, query, wait_until

from millstream._engine.store import rows
from millstream.deployments import run_deployment

pytestmark = pytest.mark.slow

WORKER = """
import os, sys, time
from pathlib import Path
from millstream import flow, serve

LEDGER = Path(os.environ["LEDGER"])
RELEASE = Path(os.environ["RELEASE"])

@flow
def guarded() -> int:
    with LEDGER.open("a") as f:
        f.write(f"start {os.getpid()}\\n")
    deadline = time.monotonic() + 90
    while not RELEASE.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with LEDGER.open("a") as f:
        f.write(f"end {os.getpid()}\\n")
    return 7

if __name__ == "__main__":
    serve(guarded.to_deployment("g"), print_starting_message=False)
"""


def _deployed(db: Path) -> bool:
    try:
        return bool(query(db, "SELECT 1 FROM deployment WHERE name = 'g'"))
    except sqlite3.OperationalError:
        return False


def _starts(ledger: Path) -> list[int]:
    return [int(x.split()[1]) for x in ledger_lines(ledger) if x.startswith("start")]


def _row(db: Path, run_id: uuid.UUID) -> tuple[str, int, bytes]:
    ((state, pid, history),) = query(
        db, "SELECT state_type, pid, history FROM flow_run WHERE id = ?", run_id.bytes
    )
    return state, pid, history


def _completed_count(history: bytes, run_id: uuid.UUID) -> int:
    states = rows.parse_history(history, run_id, "flow_run_id")
    return sum(1 for s in states if s.type.value == "COMPLETED")


def _two_workers(procs: Processes, tmp_path: Path, db_path: Path, **env: str):  # type: ignore[no-untyped-def]
    script = procs.script("guard_worker.py", WORKER)
    settings = {
        "RELEASE": str(tmp_path / "release"),
        "MILLSTREAM_SERVE_POLL_INTERVAL": "0.05",
        "MILLSTREAM_SERVE_SHUTDOWN_GRACE_SECONDS": "0",
        **env,
    }
    workers = [procs.start(script, **settings), procs.start(script, **settings)]
    wait_until(lambda: db_path.exists() and _deployed(db_path), timeout=60)
    # Both are serving once both wrote their deployment (each applies it on start).
    wait_until(lambda: all("Traceback" not in procs.output(w) for w in workers))
    return workers


def _started_run(workers: list[Any], ledger: Path) -> tuple[Any, Any, Any]:
    """Trigger the guarded deployment and wait until one worker started its body: the run,
    that worker (the owner) and the other one."""
    run = run_deployment("guarded/g", timeout=0)
    wait_until(lambda: len(_starts(ledger)) == 1, timeout=60)
    (owner_pid,) = _starts(ledger)
    owner = next(w for w in workers if w.pid == owner_pid)
    other = next(w for w in workers if w.pid != owner_pid)
    return run, owner, other


def _release_until_completed(tmp_path: Path, db_path: Path, run_id: uuid.UUID) -> None:
    """Let the waiting body return, and wait until the run is recorded Completed."""
    (tmp_path / "release").write_text("go")
    wait_until(lambda: _row(db_path, run_id)[0] == "COMPLETED", timeout=60)


def _assert_completed_once_by(db_path: Path, run_id: uuid.UUID, pid: int) -> None:
    """The run is Completed by process ``pid``, and its history holds one Completed state."""
    state, owner, history = _row(db_path, run_id)
    assert (state, owner) == ("COMPLETED", pid)
    assert _completed_count(history, run_id) == 1


def test_a_stopped_worker_past_its_lease_is_fenced_after_another_takes_over(
    procs: Processes, tmp_path: Path, db_path: Path, ledger: Path
) -> None:
    workers = _two_workers(
        procs,
        tmp_path,
        db_path,
        MILLSTREAM_SERVE_HEARTBEAT_SECONDS="0.2",
        MILLSTREAM_SERVE_LEASE_SECONDS="1.0",
    )
    run, owner, other = _started_run(workers, ledger)
    os.kill(owner.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: other.pid in _starts(ledger), timeout=60)  # taken over
        _release_until_completed(tmp_path, db_path, run.id)
    finally:
        os.kill(owner.pid, signal.SIGCONT)
    # The stale owner's body finishes too (it was mid-body) but none of its writes count.
    wait_until(lambda: "taken over by another process" in procs.output(owner), timeout=60)
    assert f"end {owner.pid}" in ledger_lines(ledger)
    _assert_completed_once_by(db_path, run.id, other.pid)


def test_a_killed_worker_s_run_is_taken_over_by_a_running_worker_within_the_lease(
    procs: Processes, tmp_path: Path, db_path: Path, ledger: Path
) -> None:
    lease = 2.0
    workers = _two_workers(
        procs,
        tmp_path,
        db_path,
        MILLSTREAM_SERVE_HEARTBEAT_SECONDS="0.5",
        MILLSTREAM_SERVE_LEASE_SECONDS=str(lease),
    )
    run, owner, other = _started_run(workers, ledger)
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)
    killed = time.monotonic()
    wait_until(lambda: other.pid in _starts(ledger), timeout=60)
    taken_after = time.monotonic() - killed
    _release_until_completed(tmp_path, db_path, run.id)
    _assert_completed_once_by(db_path, run.id, other.pid)
    assert taken_after < 3 * lease, taken_after


def test_heartbeats_follow_the_setting_so_a_short_lease_keeps_a_healthy_run(
    procs: Processes, tmp_path: Path, db_path: Path, ledger: Path
) -> None:
    _two_workers(
        procs,
        tmp_path,
        db_path,
        MILLSTREAM_SERVE_HEARTBEAT_SECONDS="0.2",
        MILLSTREAM_SERVE_LEASE_SECONDS="1.0",
    )
    run = run_deployment("guarded/g", timeout=0)
    wait_until(lambda: len(_starts(ledger)) == 1, timeout=60)
    began = time.monotonic()
    beats: set[int] = set()

    def lived_four_leases() -> bool:
        ((beat,),) = query(db_path, "SELECT heartbeat FROM flow_run WHERE id = ?", run.id.bytes)
        beats.add(beat)
        return time.monotonic() - began > 4.0

    wait_until(lived_four_leases, timeout=60)
    _release_until_completed(tmp_path, db_path, run.id)
    assert len(_starts(ledger)) == 1  # never stolen: one body ran
    assert len(beats) >= 8  # about every 0.2 s over 4 s, not every 10 s


def test_a_lease_that_heartbeats_cannot_hold_is_refused_naming_both_settings(
    procs: Processes, tmp_path: Path
) -> None:
    script = procs.script("guard_worker.py", WORKER)
    code, out = procs.run(
        script,
        RELEASE=str(tmp_path / "release"),
        MILLSTREAM_SERVE_HEARTBEAT_SECONDS="0.8",
        MILLSTREAM_SERVE_LEASE_SECONDS="1.0",
        timeout=60,
    )
    assert code != 0
    assert "MILLSTREAM_SERVE_LEASE_SECONDS" in out
    assert "MILLSTREAM_SERVE_HEARTBEAT_SECONDS" in out
