"""Flow control figures: ``python benchmarks/flow_control.py``.

Targets (issue 14): acquire + release of an uncontended slot of a global limit <= 50 us; a
waiter of the same process is woken <= 1 ms after the holder releases (no polling: the poll
interval is set to a minute, so only the in-process wake-up can meet it). Every slot is a
lease written to a fresh SQLite file in a temporary MILLSTREAM_HOME.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def uncontended(n: int) -> float:
    """Microseconds per ``with concurrency(name):`` on a limit nobody else holds."""
    from millstream.concurrency.sync import concurrency

    for _ in range(200):  # warm connections and statement caches
        with concurrency("bench"):
            pass
    start = time.perf_counter()
    for _ in range(n):
        with concurrency("bench"):
            pass
    return (time.perf_counter() - start) / n * 1e6


def wake_up(n: int) -> list[float]:
    """Microseconds from a release to the moment the waiting thread holds the slot."""
    from millstream.concurrency.sync import concurrency

    delays: list[float] = []

    def waiter(released_at: list[float], waiting: threading.Event, got: threading.Event) -> None:
        waiting.set()
        with concurrency("one"):
            delays.append((time.perf_counter() - released_at[0]) * 1e6)
            got.set()

    for _ in range(n):
        released_at = [0.0]
        got = threading.Event()
        waiting = threading.Event()
        with concurrency("one"):
            thread = threading.Thread(target=waiter, args=(released_at, waiting, got))
            thread.start()
            waiting.wait()
            time.sleep(0.005)  # let the waiter reach its wait before the release
            released_at[0] = time.perf_counter()
        got.wait(10)
        thread.join()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="acquire+release pairs")
    parser.add_argument("--wakes", type=int, default=50, help="wake-up measurements")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["MILLSTREAM_HOME"] = home
        os.environ["MILLSTREAM_LIMITS_POLL_SECONDS"] = "60"
        from millstream import get_client
        from millstream.client.schemas.actions import GlobalConcurrencyLimitCreate

        with get_client(sync_client=True) as client:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="bench", limit=10)
            )
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name="one", limit=1)
            )
        runs = [uncontended(args.n) for _ in range(3)]
        delays = wake_up(args.wakes)
        print(f"acquire+release, uncontended: {statistics.median(runs):.1f} us (target <= 50)")
        print(
            f"same-process wake-up after release: median {statistics.median(delays):.0f} us, "
            f"p90 {sorted(delays)[int(len(delays) * 0.9)]:.0f} us (target <= 1000)"
        )


if __name__ == "__main__":
    main()
