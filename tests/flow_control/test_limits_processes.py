"""Limits across processes: never more holders than the limit, a killed holder's slots come
back when its lease expires, and a rate limit admits at its rate."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from millstream.concurrency.sync import (
    AcquireConcurrencySlotTimeoutError,
    concurrency,
    rate_limit,
)

pytestmark = pytest.mark.slow

# Each child runs 20 flows at once on threads; each flow holds a slot of "shared" for a moment
# and writes when it entered and left to the ledger (after taking the slot, before giving it
# back, so every ledger interval lies inside a real hold).
_HOLDERS = """
import os, sys, threading, time
from millstream import flow
from millstream.concurrency.sync import concurrency

ledger = sys.argv[1]

def note(kind):
    line = f"{time.time_ns()} {kind} {os.getpid()}\\n".encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)

@flow
def hold(i: int) -> int:
    with concurrency("shared", timeout_seconds=60):
        note("enter")
        time.sleep(0.01)
        note("exit")
    return i

threads = [threading.Thread(target=hold, args=(i,)) for i in range(20)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("done", flush=True)
"""


def _most_at_once(ledger: Path) -> tuple[int, int]:
    events = []
    for line in ledger.read_text().splitlines():
        stamp, kind, _pid = line.split()
        # At one instant an exit sorts first: the intervals are inside the real holds.
        events.append((int(stamp), 0 if kind == "exit" else 1))
    events.sort()
    holders = most = entered = 0
    for _, enter in events:
        holders += 1 if enter else -1
        entered += enter
        most = max(most, holders)
    return most, entered


def test_four_processes_never_exceed_a_limit_of_three(
    make_limit: Callable[..., None], spawn: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    make_limit("shared", 3)
    ledger = tmp_path / "ledger.txt"
    children = [
        spawn(_HOLDERS, str(ledger), MILLSTREAM_LIMITS_POLL_SECONDS="0.02") for _ in range(4)
    ]
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert "done" in out
    most, entered = _most_at_once(ledger)
    assert entered == 80
    # The limit was reached (they did compete) and never passed.
    assert most == 3


_KILLED_HOLDER = """
import time
from millstream.concurrency.sync import concurrency

with concurrency("solo", lease_duration=1.0):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_killed_holder_gives_its_slot_back_when_its_lease_expires(
    make_limit: Callable[..., None],
    spawn: Callable[..., subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MILLSTREAM_LIMITS_POLL_SECONDS", "0.05")
    make_limit("solo", 1)
    child = spawn(_KILLED_HOLDER)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "holding"
    # Held for longer than the lease: the child renews it while alive.
    time.sleep(1.5)
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        with concurrency("solo", timeout_seconds=0):
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    killed = time.monotonic()
    with concurrency("solo", timeout_seconds=10):
        waited = time.monotonic() - killed
    # At most one lease (1 s) after its last renewal, plus a poll.
    assert waited < 1.5


def test_a_rate_limit_of_ten_per_second_admits_fifty_in_five_seconds(
    make_limit: Callable[..., None],
) -> None:
    # A bucket of 2 absorbs a late wake-up; after the first burst it refills at 10 a second.
    make_limit("rate", 2, slot_decay_per_second=10.0)
    rate_limit("rate", occupy=2)
    start = time.monotonic()
    admitted: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        while time.monotonic() - start < 5.0:
            rate_limit("rate", timeout_seconds=5)
            with lock:
                admitted.append(time.monotonic() - start)

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    within = [t for t in admitted if t <= 5.0]
    assert 49 <= len(within) <= 51, len(within)
