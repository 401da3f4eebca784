"""Start-up time: ``import millstream``, ``from millstream import flow, task`` and ``millstream
--help``, each in a fresh process: ``python benchmarks/cli_start.py [--reps 5] [--root DIR]``.

Targets (issues 9 and 15): ``millstream --help`` <= 150 ms and ``import millstream`` <= 150 ms,
wall time of the whole process (interpreter start included, printed alongside as ``python -c
pass``). Two modes: ``pyc`` with compiled bytecode next to the sources (an installed package),
and ``source`` with the repository's own ``__pycache__`` folders removed and
PYTHONDONTWRITEBYTECODE=1, so every Millstream module is compiled on each start (what a
checkout sees when that variable is set, as in CI; the standard library keeps its bytecode).
``--root`` measures another checkout (for example ``git archive`` of an older commit).
"""

from __future__ import annotations

import argparse
import os
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


def _once(root: Path, code: str, argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
        cwd=root,
    )
    return (time.perf_counter() - start) * 1e3


def measure(root: Path, reps: int, mode: str) -> dict[str, float]:
    """Median wall milliseconds of each case over ``reps`` fresh processes."""
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
            results[label] = statistics.median(_once(root, code, argv, env) for _ in range(reps))
    return results


def main() -> int:
    """Print the medians of both modes; exit 1 if a target is missed with bytecode present."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    args = parser.parse_args()
    missed = False
    for mode in ("pyc", "source"):
        results = measure(args.root.resolve(), args.reps, mode)
        for label, ms in results.items():
            target = TARGETS_MS.get(label)
            verdict = "" if target is None else f" (target <= {target:g})"
            if target is not None:
                ok = ms <= target
                verdict += " ok" if ok else " MISSED"
                missed = missed or (mode == "pyc" and not ok)
            print(f"{mode:<6} {label:<34} {ms:7.1f} ms{verdict}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
