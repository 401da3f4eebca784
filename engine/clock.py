"""The engine's one clock: the time recorded on states and the waits between retries.

Everything that reads the wall-clock time for a record (``now``), or waits for a retry, a
schedule or a durable sleep (``sleep`` from a coroutine, ``sleep_sync`` from a thread), goes
through this module, so that a test can swap the clock for one it controls
(``use_clock(FastClock())``; ``millstream.testing`` wraps it). With no clock installed (the
default) the functions are the real ones: ``now()`` costs one global lookup more than
``datetime.now``.

Two test clocks:

- ``FastClock``: real time plus an offset; every sleep returns at once and moves the offset on
  by its length, so ``retry_delay_seconds=60`` takes no time while the recorded timestamps still
  say the retry happened a minute later.
- ``FrozenClock``: time stands still at ``start`` until ``advance(seconds)`` moves it on; a
  sleep waits until the clock has been advanced past its deadline (sleepers on any loop or
  thread are woken).

The clock is per process (a test harness installs one for its block), not per context: the
engine's own threads must see the same time as the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "Clock",
    "FastClock",
    "FrozenClock",
    "current_clock",
    "now",
    "sleep",
    "sleep_sync",
    "use_clock",
]


class Clock(Protocol):
    """What a clock provides: the current UTC time and the two kinds of wait."""

    def now(self) -> dt.datetime:
        """The current time, timezone-aware in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` from a coroutine."""
        ...

    def sleep_sync(self, seconds: float) -> None:
        """Wait ``seconds``, blocking the calling thread."""
        ...


_clock: Clock | None = None
_Waiter = tuple[dt.datetime, asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def now() -> dt.datetime:
    """The current time, timezone-aware in UTC (every recorded timestamp uses it)."""
    clock = _clock
    if clock is None:
        return dt.datetime.now(dt.UTC)
    return clock.now()


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` on the running loop (by the installed clock)."""
    clock = _clock
    if clock is None:
        await asyncio.sleep(seconds)
    else:
        await clock.sleep(seconds)


def sleep_sync(seconds: float) -> None:
    """Block the calling thread for ``seconds`` (by the installed clock)."""
    clock = _clock
    if clock is None:
        time.sleep(seconds)
    else:
        clock.sleep_sync(seconds)


def current_clock() -> Clock | None:
    """The installed clock, or None when the real one is in use."""
    return _clock


@contextlib.contextmanager
def use_clock(clock: Clock) -> Iterator[Clock]:
    """Install ``clock`` for the process inside the block (blocks nest: the previous one is
    put back)."""
    global _clock
    previous = _clock
    _clock = clock
    try:
        yield clock
    finally:
        _clock = previous


class FastClock:
    """Real time plus an offset: sleeps return at once and move the offset on by their length."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    @property
    def slept(self) -> float:
        """Seconds skipped by sleeps so far."""
        return self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` (as if that much time had passed)."""
        with self._lock:
            self._offset += max(0.0, seconds)

    def now(self) -> dt.datetime:
        """Real time plus the seconds skipped so far."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self._offset)

    async def sleep(self, seconds: float) -> None:
        """Skip ``seconds``; still gives the loop one turn, as a real sleep would."""
        self.advance(seconds)
        await asyncio.sleep(0)

    def sleep_sync(self, seconds: float) -> None:
        """Skip ``seconds`` without blocking."""
        self.advance(seconds)


class FrozenClock:
    """Time stands still at ``start`` until ``advance()``; sleeps wait for it to pass them."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and start.tzinfo is None:
            raise ValueError("FrozenClock(start=...) needs a timezone-aware datetime")
        self._now = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self._cond = threading.Condition()
        self._waiters: list[_Waiter] = []
        self._sync_sleepers = 0

    def now(self) -> dt.datetime:
        """The frozen time."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock to move (tests wait for this)."""
        with self._cond:
            return len(self._waiters) + self._sync_sleepers

    def advance(self, seconds: float = 0.0, *, to: dt.datetime | None = None) -> dt.datetime:
        """Move time on by ``seconds`` (or to ``to``) and wake the sleeps now due; returns the
        new time. Time never moves backwards."""
        with self._cond:
            target = to if to is not None else self._now + dt.timedelta(seconds=seconds)
            if target > self._now:
                self._now = target
            due = [w for w in self._waiters if w[0] <= self._now]
            self._waiters = [w for w in self._waiters if w[0] > self._now]
            self._cond.notify_all()
        for _, loop, fut in due:
            loop.call_soon_threadsafe(_wake, fut)
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced ``seconds`` past now."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            deadline = self._now + dt.timedelta(seconds=seconds)
            if deadline <= self._now:
                fut.set_result(None)
            else:
                entry = (deadline, loop, fut)
                self._waiters.append(entry)
        try:
            await fut
        finally:
            if not fut.done() or fut.cancelled():
                with self._cond:
                    self._waiters = [w for w in self._waiters if w[2] is not fut]

    def sleep_sync(self, seconds: float) -> None:
        """Block until the clock has been advanced ``seconds`` past now."""
        with self._cond:
            deadline = self._now + dt.timedelta(seconds=seconds)
            self._sync_sleepers += 1
            try:
                while self._now < deadline:
                    self._cond.wait()
            finally:
                self._sync_sleepers -= 1


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
