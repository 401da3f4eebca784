"""Plumbing shared by the benchmark scripts: timing, and the S1 workload.

The scripts are run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path`` and
they import this module as ``_common``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any


def seconds(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating_medians(reps: int, *fns: Callable[[], object]) -> list[float]:
    """Median seconds of each of ``fns`` over ``reps`` rounds of one call each, in turn, so that
    machine noise hits them all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for fn, taken in zip(fns, times, strict=True):
            taken.append(seconds(fn))
    return [statistics.median(taken) for taken in times]


def async_chain() -> tuple[Any, Any, Callable[[int], Coroutine[Any, Any, int]]]:
    """S1, an async flow awaiting ``n`` async no-op tasks one after another: the task, the flow
    and the same work bare (plain coroutines) for the overhead's baseline."""
    from millstream import flow, task

    @task
    async def anoop(x: int) -> int:
        return x

    @flow
    async def chain(n: int) -> int:
        total = 0
        for i in range(n):
            total += await anoop(i)
        return total

    async def bare(n: int) -> int:
        async def noop(x: int) -> int:
            return x

        total = 0
        for i in range(n):
            total += await noop(i)
        return total

    return anoop, chain, bare
