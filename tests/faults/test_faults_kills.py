"""Random SIGKILLs of a running flow, and of ``recover()`` itself: no run is lost, none is
completed twice, and the result is an uninterrupted run's. Bodies append to a ledger."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from fault_tools import Processes, ledger_lines, query, wait_until

from millstream._engine.store import rows

pytestmark = pytest.mark.slow

FLOW = """
import os, time
from pathlib import Path
from millstream import flow, task

LEDGER = Path(os.environ["LEDGER"])

@task
def step(i: int, acc: int) -> int:
    with LEDGER.open("a") as f:
        f.write(f"step {i}\\n")
    time.sleep(0.01)
    return acc + i

@flow
def twenty() -> int:
    acc = 0
    for i in range(20):
        acc = step(i, acc)
    return acc

if __name__ == "__main__":
    print("result", twenty())
"""

RECOVER = """
from millstream.recovery import recover
report = recover()
print("resumed", len(report.resumed))
"""


def _recorded(db: Path) -> bool:
    try:
        return bool(query(db, "SELECT 1 FROM flow_run"))
    except sqlite3.OperationalError:
        return False


def _flow_state(db: Path) -> list[tuple[str, bytes, bytes]]:
    return query(db, "SELECT state_type, id, history FROM flow_run")


@pytest.mark.parametrize("trial", range(6))
def test_a_random_kill_then_recover_loses_nothing_and_completes_once(
    trial: int, procs: Processes, db_path: Path, ledger: Path
) -> None:
    rng = random.Random(trial)
    flow_script = procs.script("twenty.py", FLOW)
    recover_script = procs.script("recover.py", RECOVER)
    proc = procs.start(flow_script)
    # Killed once the run is recorded (before that, nothing was acknowledged to anyone).
    wait_until(lambda: db_path.exists() and _recorded(db_path), timeout=60)
    time.sleep(rng.uniform(0.0, 0.2))  # a random moment to kill at, not a synchronisation
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if trial % 2:  # kill recover() too, part way
        rec = procs.start(recover_script)
        wait_until(lambda: rec.poll() is not None or len(ledger_lines(ledger)) > 1, timeout=60)
        time.sleep(rng.uniform(0.0, 0.1))
        rec.send_signal(signal.SIGKILL)
        rec.wait(30)
    for _ in range(3):  # until nothing is left to resume
        code, out = procs.run(recover_script, timeout=120)
        assert code == 0, out
        if "resumed 0" in out:
            break
    found = _flow_state(db_path)
    assert len(found) == 1  # the run was never lost (nor duplicated)
    ((state, run_id, history),) = found
    assert state == "COMPLETED"
    states = rows.parse_history(history, uuid.UUID(bytes=run_id), "flow_run_id")
    assert sum(1 for s in states if s.type.value == "COMPLETED") == 1
    from millstream._engine.results.refs import decode

    ((result,),) = query(db_path, "SELECT result FROM flow_run")
    assert decode(result) == sum(range(20))
    steps = {int(x.split()[1]) for x in ledger_lines(ledger)}
    assert steps == set(range(20))
