"""Waiting on many task-run futures at once: all of them, or each as it finishes."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from millstream._engine.orchestrate.scheduler import EngineFuture, Waiting, blocking_here
from millstream._engine.orchestrate.slots import held_var


async def wait_all_async(futures: Iterable[EngineFuture]) -> None:
    """Wait, from any event loop, until every future is done (one wake-up, not one per run)."""
    pending = [f for f in futures if f._state is None]
    if not pending:
        return
    loop = asyncio.get_running_loop()
    all_done: asyncio.Future[None] = loop.create_future()
    remaining = [len(pending)]

    def settle() -> None:
        remaining[0] -= 1
        if remaining[0] == 0 and not all_done.done():
            all_done.set_result(None)

    def on_done(_owner: Any) -> None:
        # Called on the thread of whichever loop ran the task run (it may have moved).
        if asyncio.events._get_running_loop() is loop:
            settle()
        else:
            loop.call_soon_threadsafe(settle)

    for fut in pending:
        fut.add_done_callback(on_done, None)
    held = held_var.get()
    if held is None or not held.give_back():
        await all_done
        return
    try:
        await all_done
    finally:
        await held.take_back()


def wait_many(
    futures: Iterable[EngineFuture], timeout: float | None = None
) -> tuple[set[EngineFuture], set[EngineFuture]]:
    """Block until all futures are done or ``timeout``; return ``(done, not_done)``."""
    futures = list(futures)
    deadline = None if timeout is None else time.monotonic() + timeout
    for fut in futures:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not fut.wait(remaining):
            break
    done = {f for f in futures if f.done()}
    return done, {f for f in futures if not f.done()}


def _ignore_owner(fn: Callable[[EngineFuture], None], fut: EngineFuture, _owner: Any) -> None:
    fn(fut)


def as_completed_sync(
    futures: Iterable[EngineFuture], timeout: float | None = None
) -> Iterator[EngineFuture]:
    """Yield futures as they finish (blocking); ``TimeoutError`` when ``timeout`` passes."""
    pending = list(dict.fromkeys(futures))
    done_queue: list[EngineFuture] = []
    cond = threading.Condition()

    def on_done(fut: EngineFuture) -> None:
        with cond:
            done_queue.append(fut)
            cond.notify_all()

    for fut in pending:
        fut.add_done_callback(functools.partial(_ignore_owner, on_done, fut), None)
    deadline = None if timeout is None else time.monotonic() + timeout
    yielded = 0
    while yielded < len(pending):
        with cond:
            item = done_queue.pop(0) if done_queue else None
        if item is None:
            # Outside the condition's lock: giving back or taking a slot may take a while.
            with Waiting(blocking_here(), held_var.get()), cond:
                while not done_queue:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError(
                            f"{len(pending) - yielded} (of {len(pending)}) futures unfinished"
                        )
                    cond.wait(remaining)
                item = done_queue.pop(0)
        yielded += 1
        yield item
