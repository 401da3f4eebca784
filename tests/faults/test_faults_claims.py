"""A caller-given ``flow_run_id`` is one atomic claim across processes: started from two
processes at once, the body runs once and both callers get its outcome."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fault_tools import Processes, ledger_lines, query, wait_until

pytestmark = pytest.mark.slow

RACER = """
import os, sys, time, uuid
from pathlib import Path
from millstream import flow
from millstream._engine.settings import get_current_settings
from millstream._engine.store import get_store

LEDGER = Path(os.environ["LEDGER"])

@flow
def once(n: int) -> int:
    with LEDGER.open("a") as f:
        f.write(f"body {os.getpid()}\\n")
    time.sleep(0.05)  # the body's own work: long enough for the other caller to arrive
    return n * 2

if __name__ == "__main__":
    go = Path(sys.argv[2])
    get_store(get_current_settings().database_path).ensure_open_sync()
    Path(sys.argv[3]).write_text("ready")
    while not go.exists():
        time.sleep(0.001)
    for run_id in sys.argv[1].split(","):
        print("result", once(21, flow_run_id=uuid.UUID(run_id)), flush=True)
"""


def test_one_flow_run_id_started_from_two_processes_runs_its_body_once(
    procs: Processes, tmp_path: Path, db_path: Path, ledger: Path
) -> None:
    script = procs.script("racer.py", RACER)
    ids = [str(uuid.uuid4()) for _ in range(10)]
    go = tmp_path / "go"
    racers = [
        procs.start(script, ",".join(ids), str(go), str(tmp_path / f"ready-{i}")) for i in (0, 1)
    ]
    wait_until(lambda: all((tmp_path / f"ready-{i}").exists() for i in (0, 1)), timeout=60)
    go.write_text("go")
    for racer in racers:
        assert racer.wait(120) == 0, procs.output(racer)
        results = [x for x in procs.output(racer).splitlines() if x.startswith("result")]
        assert results == ["result 42"] * len(ids)
    assert len(ledger_lines(ledger)) == len(ids)  # one body per id, whoever won
    assert query(db_path, "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'") == [
        (len(ids),)
    ]
