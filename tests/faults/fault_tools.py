"""Helpers of the fault-injection suite (tests/faults): real processes, real kills, real
locks; the oracle is a ledger file.

Task and flow bodies append a line to a ledger file (``LEDGER``) as they run; a test compares
what the ledger says happened with what the database recorded. Every wait polls with a
deadline, and every case is bounded in time (pytest-timeout, and the deadlines below).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read straight from the file (not through the engine)."""
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql, params).fetchall()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, step: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(step)


def ledger_lines(path: Path) -> list[str]:
    """The ledger's lines (an absent ledger is empty)."""
    return path.read_text().splitlines() if path.exists() else []


class Processes:
    """Subprocesses of one test, output to files; whatever is left is killed at the end."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []
        self.outputs: list[Path] = []

    def script(self, name: str, code: str) -> Path:
        path = self.tmp_path / name
        path.write_text(textwrap.dedent(code))
        return path

    def start(self, script: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
        out = self.tmp_path / f"{script.stem}-{len(self.procs)}.out"
        self.outputs.append(out)
        with out.open("w") as handle:
            proc = subprocess.Popen(
                [sys.executable, str(script), *args],
                env={**self.env, **extra},
                cwd=self.tmp_path,
                stdout=handle,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, script: Path, *args: str, timeout: float = 60, **extra: str) -> tuple[int, str]:
        """Run to the end; ``(returncode, output)``."""
        proc = self.start(script, *args, **extra)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        return proc.returncode, self.output(proc)

    def output(self, proc: subprocess.Popen[str]) -> str:
        return self.outputs[self.procs.index(proc)].read_text()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                proc.kill()
            proc.wait()
