"""Task bodies of ``benchmarks/runners.py``, in a module of their own so that worker processes
(the process pool's, Dask's) import them by name, as they would a user's module."""

from __future__ import annotations

import time

from millstream import task


def burn(ms: float) -> int:
    """Spin the CPU for about ``ms`` milliseconds (pure Python: holds the GIL, as CPU work)."""
    deadline = time.perf_counter() + ms / 1000
    count = 0
    while time.perf_counter() < deadline:
        count += 1
    return count


def cpu(i: int) -> int:
    """About 10 ms of CPU work."""
    burn(10)
    return i


def noop(i: int) -> int:
    """No work at all: the time of a call is all overhead."""
    return i


cpu_task = task(cpu, name="cpu")
noop_task = task(noop, name="noop")
