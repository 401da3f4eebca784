"""Wake-ups within a process: a released slot wakes every waiter of this process at once."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Notifier:
    """A generation counter with waiters on threads (a condition) and on loops (futures).

    A waiter reads the generation *before* its attempt and waits only while it is unchanged,
    so a release between the attempt and the wait is never missed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._generation = 0
        self._futures: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def generation(self) -> int:
        """The current generation (bumped by every ``notify``)."""
        return self._generation

    def notify(self) -> None:
        """Wake every waiter (slots were released or a limit changed)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
            futures, self._futures = self._futures, set()
        for loop, fut in futures:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # its loop closed: that waiter is gone
                continue

    def wait(self, generation: int, timeout: float) -> None:
        """Block until the generation moves past ``generation`` or ``timeout`` seconds pass."""
        with self._cond:
            if self._generation == generation:
                self._cond.wait(timeout)

    async def wait_async(self, generation: int, timeout: float) -> None:
        """``wait`` on the running loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (loop, fut)
        with self._cond:
            if self._generation != generation:
                return
            self._futures.add(entry)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._cond:
                self._futures.discard(entry)


_notifiers: dict[Path, Notifier] = {}
_lock = threading.Lock()


def notifier_for(path: Path) -> Notifier:
    """This process's notifier for the database at ``path``."""
    found = _notifiers.get(path)
    if found is None:
        with _lock:
            found = _notifiers.setdefault(path, Notifier())
    return found
