"""Slots: the task runner's bound on concurrently running task runs, for any thread and loop;
and the seam where a tagged task run takes the slots of its tags' concurrency limits."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from millstream._engine.limits import Grant
    from millstream._engine.model.records import TaskRun
    from millstream._engine.store import Store


class Ticket:
    """One party waiting for a slot: a thread (``event``) or a coroutine (``fut`` on ``loop``)."""

    __slots__ = ("event", "fut", "granted", "loop", "withdrawn")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.event = event
        self.loop = loop
        self.fut: asyncio.Future[None] | None = loop.create_future() if loop is not None else None
        self.granted = False
        self.withdrawn = False


def _grant(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Slots:
    """A first-come first-served counting semaphore for any thread and any event loop.

    Unlike ``asyncio.Semaphore`` it is not tied to one loop: a run moved to another loop, and a
    worker thread that gave its slot back while it waited, take slots from the same count.
    """

    __slots__ = ("_free", "_lock", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiters: collections.deque[Ticket] = collections.deque()

    def request(self, loop: asyncio.AbstractEventLoop) -> Ticket | None:
        """Take a slot now (None), or get a ticket to ``wait`` for one on ``loop``."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return None
            ticket = Ticket(loop=loop)
            self._waiters.append(ticket)
            return ticket

    async def wait(self, ticket: Ticket) -> None:
        """Wait until ``ticket`` is granted its slot (a cancelled wait withdraws it)."""
        assert ticket.fut is not None
        try:
            await ticket.fut
        except asyncio.CancelledError:
            self.withdraw(ticket)
            raise

    async def acquire(self) -> None:
        """Take a slot, waiting on the running loop for one."""
        ticket = self.request(asyncio.get_running_loop())
        if ticket is not None:
            await self.wait(ticket)

    def acquire_blocking(self) -> None:
        """Take a slot, blocking this thread (which must not be running a loop) for one."""
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            ticket = Ticket(event=threading.Event())
            self._waiters.append(ticket)
        assert ticket.event is not None
        ticket.event.wait()

    def withdraw(self, ticket: Ticket) -> None:
        """Stop waiting with ``ticket``; a slot it was already granted goes to the next."""
        with self._lock:
            if ticket.withdrawn:
                return
            ticket.withdrawn = True
            if ticket.granted:
                self._release_locked()
            else:
                self._waiters.remove(ticket)

    def release(self) -> None:
        """Give a slot back (to the longest waiting party, if any)."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        while self._waiters:
            ticket = self._waiters.popleft()
            ticket.granted = True
            if ticket.event is not None:
                ticket.event.set()
                return
            assert ticket.loop is not None and ticket.fut is not None
            try:
                ticket.loop.call_soon_threadsafe(_grant, ticket.fut)
            except RuntimeError:  # its loop closed: nobody waits there anymore
                ticket.withdrawn = True
                continue
            return
        self._free += 1


class Held:
    """The slot a running task run holds; given back while the run waits for another run."""

    __slots__ = ("held", "slots")

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.held = True

    def give_back(self) -> bool:
        if not self.held:
            return False
        self.held = False
        self.slots.release()
        return True

    def take_back_blocking(self) -> None:
        self.slots.acquire_blocking()
        self.held = True

    async def take_back(self) -> None:
        await self.slots.acquire()
        self.held = True


# The slot of the task run whose code is running (its coroutine, or its sync body's thread).
held_var: contextvars.ContextVar[Held | None] = contextvars.ContextVar(
    "millstream_held_slot", default=None
)


async def take_tag_slots(store: Store, task_run: TaskRun) -> Grant | None:
    """Take one slot of each tag limit of ``task_run`` (it waits, Pending, until they are all
    free); None when none of its tags has a limit."""
    from millstream._engine.limits import acquire
    from millstream._engine.model.limits import TAG_PREFIX

    await store.ensure_open()
    names = store.existing_limits([TAG_PREFIX + tag for tag in task_run.tags])
    if not names:
        return None
    return await acquire(store, names, 1, holder=f"task_run:{task_run.id}")


def give_back_tag_slots(grant: Grant | None) -> None:
    """Release what ``take_tag_slots`` took (waiters in this process wake at once)."""
    if grant is not None:
        from millstream._engine.limits import release_blocking

        release_blocking(grant)
