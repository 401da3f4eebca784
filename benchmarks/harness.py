"""Test harness figures (issue 15): a fresh harness plus one flow, and 100 tests under xdist.

``python benchmarks/harness.py [--reps N] [--workers N]``. Targets: entering a
``millstream_test_harness()``, running one flow with one task and leaving the harness (store
stopped, temporary directory removed) takes <= 20 ms (median, in a warm process); a pytest
session of 100 tests, each with a fresh harness (the ``millstream_harness`` fixture), run with
``pytest -n <workers>``, is timed end to end and per test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from millstream import flow, task

HERE = Path(__file__).resolve().parent


@task
def add(x: int, y: int) -> int:
    """The one task of the measured flow."""
    return x + y


@flow
def one(n: int) -> int:
    """The measured flow (here and, imported from this module, in the xdist suite)."""
    return add(n, 1)


SUITE = textwrap.dedent(
    """
    import pytest
    from harness import one

    @pytest.mark.parametrize("n", range(100))
    def test_fresh(n, millstream_harness, millstream_runs):
        assert one(n) == n + 1
        assert millstream_runs.last_flow_run().state_name == "Completed"
    """
)


def harness_and_one_flow(reps: int) -> list[float]:
    """Milliseconds for each harness start + one flow + harness exit."""
    from millstream.testing import millstream_test_harness

    with millstream_test_harness():  # imports, the engine's process-wide threads
        one(0)
    times = []
    for i in range(reps):
        start = time.perf_counter()
        with millstream_test_harness():
            one(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def xdist_suite(workers: int) -> tuple[float, str]:
    """Seconds for a 100-test pytest session with -n workers, and pytest's last line."""
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_fresh.py").write_text(SUITE)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - start
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    if proc.returncode != 0:
        raise SystemExit(f"the xdist suite failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50, help="harness + flow repetitions")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (-n)")
    args = parser.parse_args()
    times = harness_and_one_flow(args.reps)
    median = statistics.median(times)
    print(
        f"harness start + one flow + exit: median {median:.1f} ms, "
        f"min {min(times):.1f} ms, max {max(times):.1f} ms over {args.reps} "
        f"(target <= 20 ms: {'ok' if median <= 20 else 'MISSED'})"
    )
    elapsed, last = xdist_suite(args.workers)
    print(
        f"100 tests, each a fresh harness, pytest -n {args.workers}: {elapsed:.2f} s end to end "
        f"({elapsed * 10:.1f} ms a test, start-up of pytest and workers included) — {last}"
    )


if __name__ == "__main__":
    main()
