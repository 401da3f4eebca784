"""The durability window: with MILLSTREAM_DURABILITY=every_task, a task's final state is on
disk before the next task starts, so a SIGKILL loses none of the tasks the ledger says
finished (and recovery runs none of them again)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_tools import Processes, ledger_lines, query

pytestmark = pytest.mark.slow

KILLED = """
import os, signal
from pathlib import Path
from millstream import flow, task

LEDGER = Path(os.environ["LEDGER"])

@task
def step(i: int) -> int:
    if i == 12:
        os.kill(os.getpid(), signal.SIGKILL)  # a kill in the middle of the next task
    with LEDGER.open("a") as f:
        f.write(f"done {i}\\n")
    return i

@flow
def many() -> int:
    return sum(step(i) for i in range(20))

if __name__ == "__main__":
    many()
"""


def test_every_task_durability_keeps_each_finished_task_across_a_kill(
    procs: Processes, db_path: Path, ledger: Path
) -> None:
    code, out = procs.run(
        procs.script("killed.py", KILLED), MILLSTREAM_DURABILITY="every_task", timeout=60
    )
    assert code == -9, out
    done = {int(x.split()[1]) for x in ledger_lines(ledger)}
    assert done == set(range(12))
    on_disk = {
        int(k)
        for (k,) in query(
            db_path, "SELECT dynamic_key FROM task_run WHERE state_type = 'COMPLETED'"
        )
    }
    assert on_disk == done


def test_the_durability_setting_is_checked(procs: Processes) -> None:
    code, out = procs.run(
        procs.script("killed.py", KILLED), MILLSTREAM_DURABILITY="sometimes", timeout=60
    )
    assert code == 1
    assert "MILLSTREAM_DURABILITY" in out and "sometimes" in out
