"""Start-up time: ``import millstream``, ``from millstream import flow, task`` and ``millstream
--help``, each in a fresh process: ``python benchmarks/cli_start.py [--reps 5] [--root DIR]``.

Targets (issues 9 and 15): ``millstream --help`` <= 150 ms and ``import millstream`` <= 150 ms,
wall time of the whole process (interpreter start included, printed alongside as ``python -c
pass``); the children's CPU time is printed too, steadier than wall time on a busy machine. Two
modes: ``pyc`` with compiled bytecode next to the sources (an installed package),
and ``source`` with the repository's own ``__pycache__`` folders removed and
PYTHONDONTWRITEBYTECODE=1, so every Millstream module is compiled on each start (what a
checkout sees when that variable is set, as in CI; the standard library keeps its bytecode).
``--root`` measures another checkout (for example ``git archive`` of an older commit).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (label, python -c code, extra argv); --help runs the console script's own entry point.
CASES = [
    ("python -c pass", "pass", []),
    ("import millstream", "import millstream", []),
    ("from millstream import flow, task", "from millstream import flow, task", []),
    (
        "millstream --help",
        "import sys; from millstream.cli import main; sys.exit(main())",
        ["--help"],
    ),
]
TARGETS_MS = {"import millstream": 150.0, "millstream --help": 150.0}


def _drop_bytecode(root: Path) -> None:
    for folder in ("sdk", "engine"):
        for cache in (root / folder).rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _once(root: Path, code: str, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    # Wall and CPU milliseconds of one child: on a busy machine the CPU time is the steadier.
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=root,
    )
    return (time.perf_counter() - start) * 1e3, (_children_cpu() - cpu) * 1e3


def measure(root: Path, reps: int, mode: str) -> dict[str, tuple[float, float]]:
    """Median wall and CPU milliseconds of each case over ``reps`` fresh processes."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MILLSTREAM_HOME": home, "PYTHONPATH": str(root)}
        if mode == "pyc":
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            for _, code, argv in CASES:  # writes the bytecode the measured runs then read
                _once(root, code, argv, env)
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
            _drop_bytecode(root)
        results = {}
        for label, code, argv in CASES:
            runs = [_once(root, code, argv, env) for _ in range(reps)]
            results[label] = (
                statistics.median(wall for wall, _ in runs),
                statistics.median(cpu for _, cpu in runs),
            )
    return results


def help_ms(root: Path, reps: int) -> float:
    """Median wall milliseconds of ``millstream --help`` in ``root``, bytecode as it is now."""
    label, code, argv = CASES[-1]
    assert label == "millstream --help"
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "MILLSTREAM_HOME": home, "PYTHONPATH": str(root)}
        return statistics.median(_once(root, code, argv, env)[0] for _ in range(reps))


def main() -> int:
    """Print the medians of both modes; exit 1 if a target is missed with bytecode present."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    args = parser.parse_args()
    missed = False
    for mode in ("pyc", "source"):
        results = measure(args.root.resolve(), args.reps, mode)
        for label, (ms, cpu) in results.items():
            target = TARGETS_MS.get(label)
            verdict = "" if target is None else f" (target <= {target:g})"
            if target is not None:
                ok = ms <= target
                verdict += " ok" if ok else " MISSED"
                missed = missed or (mode == "pyc" and not ok)
            print(f"{mode:<6} {label:<34} {ms:7.1f} ms wall {cpu:7.1f} ms CPU{verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
